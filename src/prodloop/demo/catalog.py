"""What Acme Home's customers ask, and what its support assistant knows.

Acme Home sells smart-home devices (hub, cameras, thermostat, doorbell, plugs) and the Protect
subscription. The assistant answers from help-center articles and a few tools. On day 20 of the
scenario Acme launches the Acme Vault smart lock: the help center has no article about it, so the
assistant retrieves unrelated articles and answers with hedges or with instructions for other devices
(see :mod:`prodloop.demo.launch`).

Each :class:`Topic` is one kind of request: the ways customers phrase it, the answer that solves it,
the article that holds that answer, and the tool the assistant calls for it.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Article:
    """A help-center article that retrieval can return."""

    id: str
    title: str
    text: str


@dataclass(frozen=True)
class Topic:
    """One kind of customer request."""

    key: str
    intent: str
    messages: tuple[str, ...]
    answers: tuple[str, ...]
    #: The article that answers it; None where the help center has none (the new product).
    article: str | None
    tool: str | None = None
    #: Confident but wrong answers, built from the unrelated articles that retrieval returns instead.
    wrong: tuple[str, ...] = ()
    #: Articles that retrieval returns for it when the help center has no answer.
    misleading: tuple[str, ...] = ()


ARTICLES = {
    a.id: a
    for a in (
        Article(
            "kb-orders-001", "Tracking your order", "Every order gets a tracking link by email once it ships."
        ),
        Article("kb-orders-002", "Delivery times", "Standard delivery takes 3-5 business days, express 1-2."),
        Article(
            "kb-orders-003", "Changing a delivery address", "Addresses can change until the label prints."
        ),
        Article(
            "kb-orders-004", "Package marked delivered but missing", "Wait 24 hours, then we open a claim."
        ),
        Article("kb-orders-005", "Where we ship", "We ship to the US, Canada, the UK and Ireland."),
        Article("kb-billing-001", "Duplicate charges", "A second charge is usually a pending authorisation."),
        Article(
            "kb-billing-002",
            "Protect plans and prices",
            "Protect Basic $3.99/month, Protect Plus $10.99/month.",
        ),
        Article(
            "kb-billing-003", "Invoices and VAT", "Invoices with a VAT number: Account > Orders > Invoice."
        ),
        Article("kb-billing-004", "Declined payments", "Check the card's expiry and billing ZIP; 3 retries."),
        Article("kb-billing-005", "Cancelling Protect", "Cancel any time in Account > Subscription."),
        Article(
            "kb-refunds-001", "Returns within 30 days", "Unused or faulty devices return free within 30 days."
        ),
        Article(
            "kb-refunds-002", "Refund timing", "Refunds post 5-10 business days after we receive the item."
        ),
        Article("kb-refunds-003", "Damaged on arrival", "Send a photo; we ship a replacement the same day."),
        Article("kb-refunds-004", "Return labels", "Labels are QR codes; show them at any carrier store."),
        Article("kb-account-001", "Resetting your password", "Reset links are valid for 30 minutes."),
        Article(
            "kb-account-002",
            "Two-factor codes",
            "Update your phone number, or switch to an authenticator app.",
        ),
        Article("kb-account-003", "Locked accounts", "Accounts unlock after 30 minutes, or by a reset link."),
        Article("kb-account-004", "Household members", "Invite members in Settings > Household."),
        Article("kb-account-005", "Unrecognised sign-ins", "Sign out all devices and reset your password."),
        Article(
            "kb-devices-001",
            "Pairing a device with the Hub",
            "Hold the reset button 10 s until the LED blinks blue.",
        ),
        Article(
            "kb-devices-002", "Devices going offline", "Use 2.4 GHz Wi-Fi; keep the device near the router."
        ),
        Article(
            "kb-devices-003",
            "Firmware updates",
            "Keep the device powered; a stuck update resumes on restart.",
        ),
        Article("kb-devices-004", "App crashes", "Update the app; clear its cache; reinstall if needed."),
        Article(
            "kb-devices-005", "Late notifications", "Turn off battery optimisation for the Acme Home app."
        ),
        Article(
            "kb-devices-006", "Thermostat calibration", "Settings > Sensor offset corrects a reading by ±3°."
        ),
        Article(
            "kb-devices-007", "Doorbell battery", "The doorbell battery lasts 2-4 months; charge by USB-C."
        ),
        Article("kb-devices-008", "Camera night vision", "Clean the lens; turn off IR when behind a window."),
        Article(
            "kb-devices-009", "Error codes", "E-2xx: network; E-3xx: account; E-4xx: device; E-5xx: server."
        ),
    )
}

_ORDER_STATUS = (
    Topic(
        "order_where",
        "order_status",
        (
            "Where is my order {order}? It was supposed to arrive {date}.",
            "order {order} status??",
            "I ordered an {product} {date} and I haven't received any shipping confirmation yet. Can you "
            "check what's going on? The order number is {order}.",
        ),
        (
            "Your order {order} is {status} with {carrier} (tracking {tracking}) and is {eta}. You'll get an "
            "email as soon as the status changes.",
            "I checked order {order}: it's {status}, {eta}. You can follow it with {carrier} tracking number "
            "{tracking}.",
        ),
        "kb-orders-001",
        "lookup_order",
    ),
    Topic(
        "order_not_arrived",
        "order_status",
        (
            "My {product} still hasn't arrived. Order number {order}.",
            "It's been {n_days} days and my {product} is still not here?? Order {order}",
        ),
        (
            "I'm sorry for the wait. Order {order} ({product}) is {status} with {carrier} and is {eta}. If "
            "it hasn't arrived by then, reply here and I'll open a claim with the carrier.",
        ),
        "kb-orders-001",
        "lookup_order",
    ),
    Topic(
        "tracking_stuck",
        "order_status",
        ("The tracking for {order} hasn't updated in {n_days} days. Is it lost?",),
        (
            "Tracking can pause while a parcel moves between hubs. Order {order} is {status} and is {eta}. "
            "If nothing changes in 2 more business days, we'll send a replacement at no cost.",
        ),
        "kb-orders-001",
        "lookup_order",
    ),
    Topic(
        "change_address",
        "order_status",
        (
            "Can I change the delivery address for order {order}? I'm moving to {city} next week.",
            "wrong address on my order {order}, can you fix it",
        ),
        (
            "Yes, as long as the label hasn't printed. Order {order} is {status}, so go to Account > Orders "
            "> {order} > Change address and enter the new address in {city}.",
        ),
        "kb-orders-003",
        "lookup_order",
    ),
    Topic(
        "delivered_missing",
        "order_status",
        (
            "{carrier} says delivered but there's no package at my door. Order {order}.",
            "Tracking says my {product} was delivered but I never got it!",
        ),
        (
            "I'm sorry about that. Carriers sometimes mark parcels delivered a little early, so please "
            "check with neighbours and around your building. If it hasn't turned up within 24 hours, reply "
            "here and we'll open a claim and ship a replacement.",
        ),
        "kb-orders-004",
        "lookup_order",
    ),
    Topic(
        "ship_abroad",
        "order_status",
        (
            "Do you ship to {country}? I want to order an {product}.",
            "How long does express shipping take to {city}?",
        ),
        (
            "We ship to the US, Canada, the UK and Ireland. Standard delivery takes 3-5 business days and "
            "express 1-2 business days.",
        ),
        "kb-orders-005",
    ),
)

_BILLING = (
    Topic(
        "double_charge",
        "billing",
        (
            "I was charged twice for my {plan} subscription this month ({plan_price} each time).",
            "There are 2 charges of {amount} on my card for the same order {order}!!",
        ),
        (
            "I can see why that's worrying. One of the two is a pending authorisation that your bank "
            "releases within 3-5 business days; only one charge will post. If both still show after 5 days, "
            "reply with a screenshot and we'll refund the duplicate.",
        ),
        "kb-billing-001",
        "list_charges",
    ),
    Topic(
        "bill_went_up",
        "billing",
        ("Why did my bill go up to {amount}? I didn't change anything.",),
        (
            "I checked your charges: your Protect trial ended this month, so the regular price now applies "
            "({plan} is {plan_price}/month). You can switch plans or cancel in Account > Subscription.",
        ),
        "kb-billing-002",
        "list_charges",
    ),
    Topic(
        "vat_invoice",
        "billing",
        ("Can I get an invoice with my company's VAT number for order {order}?",),
        (
            "Yes. Open Account > Orders > {order} > Invoice, add your company name and VAT number, and "
            "download the PDF. The VAT number is printed on the invoice.",
        ),
        "kb-billing-003",
    ),
    Topic(
        "card_declined",
        "billing",
        (
            "My card keeps getting declined when I try to renew {plan}.",
            "payment failed again, card is fine everywhere else",
        ),
        (
            "Declines usually come from an expired card or a billing ZIP that doesn't match. Please check "
            "both in Account > Payment. We retry 3 times over 7 days, so your {plan} coverage continues "
            "meanwhile.",
        ),
        "kb-billing-004",
    ),
    Topic(
        "switch_plan",
        "billing",
        ("How do I switch from {plan} to {plan2}? What will it cost?",),
        (
            "Go to Account > Subscription > Change plan and pick {plan2}. It costs {plan2_price}/month; the "
            "change applies right away and we prorate the rest of this month.",
        ),
        "kb-billing-002",
    ),
    Topic(
        "unknown_charge",
        "billing",
        ("There's a charge of {amount} from ACME*HOME on my statement that I don't recognise.",),
        (
            "That charge is from Acme Home. I found a payment of {amount} on your account for your {plan} "
            "subscription. If you didn't mean to subscribe, you can cancel and get a refund for this month.",
        ),
        "kb-billing-001",
        "list_charges",
    ),
    Topic(
        "cancel_protect",
        "billing",
        ("cancel my {plan} subscription please", "How do I stop paying for Protect?"),
        (
            "You can cancel any time in Account > Subscription > Cancel plan. Your {plan} features stay "
            "active until the end of the current billing month and you won't be charged again.",
        ),
        "kb-billing-005",
    ),
)

_REFUND = (
    Topic(
        "return_device",
        "refund",
        (
            "I want to return my {product}, it doesn't work with {ecosystem}. Order {order}.",
            "Can I send back the {product}? Not what I expected.",
        ),
        (
            "Of course. Devices return free within 30 days. Start the return in Account > Orders > {order} > "
            "Return, print or show the QR label at any {carrier} store, and we refund you once it arrives.",
        ),
        "kb-refunds-001",
        "lookup_order",
    ),
    Topic(
        "refund_status",
        "refund",
        (
            "When will I get my refund for order {order}? I sent the item back {date}.",
            "still no refund for {order}",
        ),
        (
            "We received your return for order {order}, and the refund of {amount} was issued today. It "
            "takes {refund_days} business days to appear on your statement.",
        ),
        "kb-refunds-002",
        "lookup_refund",
    ),
    Topic(
        "damaged",
        "refund",
        (
            "My {product} arrived damaged (the {part} is cracked). I'd like a refund or a replacement.",
            "box was crushed and the {product} {part} is broken",
        ),
        (
            "I'm sorry it arrived damaged. Please reply with a photo of the {part} and we'll ship a "
            "replacement {product} today; you don't need to send the damaged one back.",
        ),
        "kb-refunds-003",
        "lookup_order",
    ),
    Topic(
        "return_window",
        "refund",
        ("Is it too late to return an {product} I bought {date}?",),
        (
            "Returns are free within 30 days of delivery, so you're still in time. Start it in Account > "
            "Orders > Return.",
        ),
        "kb-refunds-001",
    ),
    Topic(
        "partial_refund",
        "refund",
        ("You refunded {amount} but I paid {amount2}. Where's the rest?",),
        (
            "The difference is the shipping cost, which we refund separately for faulty items. I've "
            "requested it now; you'll see it within {refund_days} business days.",
        ),
        "kb-refunds-002",
        "lookup_refund",
    ),
    Topic(
        "label_broken",
        "refund",
        ("The return label you sent for {order} doesn't work at the {carrier} store.",),
        (
            "Sorry about that. I've issued a new QR label for order {order}; it's in your email now. Show it "
            "at the {carrier} counter and they'll print it for you.",
        ),
        "kb-refunds-004",
        "lookup_order",
    ),
)

_ACCOUNT = (
    Topic(
        "password_wrong",
        "account_access",
        (
            "I can't log in to the Acme Home app, it says my password is wrong but I just reset it.",
            "cant login. password wrong. i reset it twice already",
        ),
        (
            "After a reset, the app can keep the old password saved. Sign out fully, close the app and log "
            "in again typing the new password. If it still fails, use Forgot password on the web to set a "
            "new one.",
        ),
        "kb-account-001",
    ),
    Topic(
        "no_2fa",
        "account_access",
        ("I never get the 2FA code by SMS. I changed my phone number {date}.",),
        (
            "Codes go to the number on file, which is still your old one. I've sent a verification link to "
            "your email; open it to update your phone number, or switch to an authenticator app in Security.",
        ),
        "kb-account-002",
        "lookup_account",
    ),
    Topic(
        "locked",
        "account_access",
        ("My account is locked after too many attempts. Email is {email}.",),
        (
            "Your account unlocks automatically 30 minutes after the last attempt. I've also sent a reset "
            "link to {email}; it's valid for 30 minutes and unlocks the account right away.",
        ),
        "kb-account-003",
        "lookup_account",
    ),
    Topic(
        "change_email",
        "account_access",
        ("How do I change the email address on my account from {email} to a new one?",),
        (
            "Go to Settings > Account > Email, enter the new address and confirm it from the link we send "
            "there. Until you confirm, we keep sending to {email}.",
        ),
        "kb-account-004",
    ),
    Topic(
        "reset_expired",
        "account_access",
        ("The password reset link says it has expired.", "reset link expired?? I only just got it"),
        (
            "Reset links are valid for 30 minutes, and each new request cancels the earlier links. Request "
            "one more and use the newest email only.",
        ),
        "kb-account-001",
    ),
    Topic(
        "strange_signin",
        "account_access",
        ("someone else logged into my account?? I got an email about a new sign-in from {city}",),
        (
            "Let's secure your account now: in Settings > Security tap Sign out all devices, then reset your "
            "password and turn on two-factor authentication. The sign-in from {city} will be logged out.",
        ),
        "kb-account-005",
        "lookup_account",
    ),
    Topic(
        "household",
        "account_access",
        ("How do I add my partner to the household so they can see the {product}?",),
        (
            "Open Settings > Household > Invite member and enter their email. Once they accept, they'll see "
            "the {product} and your other devices in their own app.",
        ),
        "kb-account-004",
    ),
)

_BUG = (
    Topic(
        "app_crash",
        "bug_report",
        (
            "The app crashes every time I open the {product} live view. {phone}, app version {app_version}.",
            "app keeps crashing on my {phone}",
        ),
        (
            "Version {app_version} has a known crash in live view that version 4.15 fixes. Please update the "
            "app from the store; if it still crashes, clear the app cache in your phone's settings.",
        ),
        "kb-devices-004",
    ),
    Topic(
        "offline",
        "bug_report",
        (
            "My {product} keeps going offline, several times a day. Wi-Fi is fine for everything else.",
            "{product} offline again!!! third time this week",
        ),
        (
            "Acme devices need 2.4 GHz Wi-Fi. If your router combines 2.4 and 5 GHz under one name, the "
            "{product} can drop when it switches. Turn on a separate 2.4 GHz network, or move the {product} "
            "closer to the router.",
        ),
        "kb-devices-002",
    ),
    Topic(
        "schedule_broken",
        "bug_report",
        ("After the latest update the {product} schedule doesn't work anymore.",),
        (
            "The update moved schedules to the Automations tab. Your schedule is still there; open "
            "Automations, select it and tap Enable to switch it back on.",
        ),
        "kb-devices-003",
    ),
    Topic(
        "error_code",
        "bug_report",
        ("I get error {error_code} when I try to add an {product} to my home.",),
        (
            "{error_code} means the {product} can't reach our servers during setup. Connect your phone to "
            "the same 2.4 GHz Wi-Fi as the device and try again.",
        ),
        "kb-devices-009",
    ),
    Topic(
        "late_notifications",
        "bug_report",
        ("Motion notifications from my {product} arrive 5 minutes late.",),
        (
            "Your phone is delaying the Acme Home app to save battery. Turn off battery optimisation for the "
            "app; the notifications will arrive within seconds.",
        ),
        "kb-devices-005",
    ),
    Topic(
        "thermo_reading",
        "bug_report",
        ("My Acme Thermo shows {temp}° but the room is clearly warmer. Is the sensor broken?",),
        (
            "The sensor is probably fine: the Acme Thermo reads the air right at the wall. In Settings > "
            "Sensor offset you can correct the reading by up to 3°.",
        ),
        "kb-devices-006",
    ),
    Topic(
        "update_stuck",
        "bug_report",
        ("the {product} firmware update is stuck at {pct}%",),
        (
            "Keep the {product} powered and unplug it for 10 seconds: the update resumes from {pct}% when it "
            "restarts and finishes in a few minutes.",
        ),
        "kb-devices-003",
    ),
    Topic(
        "night_vision",
        "bug_report",
        ("Night vision on the Acme Cam 2 is just a white blur since yesterday.",),
        (
            "A white blur at night usually means the infrared light reflects off glass or a dirty lens. "
            "Clean the lens, and if the camera looks through a window, turn off IR in Camera settings.",
        ),
        "kb-devices-008",
    ),
    Topic(
        "doorbell_battery",
        "bug_report",
        ("My Acme Doorbell battery only lasts a week now.",),
        (
            "A doorbell battery lasts 2-4 months; a week usually means the motion zone catches a busy "
            "street. Shrink the motion zone in Doorbell settings and charge the battery fully by USB-C.",
        ),
        "kb-devices-007",
    ),
)

#: Requests about the products the help center covers.
TOPICS: tuple[Topic, ...] = _ORDER_STATUS + _BILLING + _REFUND + _ACCOUNT + _BUG

#: The usual mix of intents before the launch.
INTENT_WEIGHTS = {
    "order_status": 0.30,
    "billing": 0.19,
    "refund": 0.17,
    "account_access": 0.15,
    "bug_report": 0.19,
}

#: On-topic answers that do not solve the request.
VAGUE_ANSWERS = {
    "order_status": (
        "Orders usually arrive within 3-5 business days. You can check the status any time in Account > "
        "Orders.",
        "Thanks for your patience! Shipping can take a little longer at busy times. Please keep an eye on "
        "your tracking email.",
    ),
    "billing": (
        "You can see all your charges and invoices in Account > Billing. Let me know if anything looks "
        "wrong.",
        "Billing questions can depend on your plan. Please review your plan details in Account > "
        "Subscription.",
    ),
    "refund": (
        "Refunds are processed once we receive the returned item. This can take some time depending on your "
        "bank.",
        "You can start a return from Account > Orders. Our returns team will take it from there.",
    ),
    "account_access": (
        "Please try resetting your password with the Forgot password link on the sign-in page.",
        "For security reasons I can't access your account details here, but you can manage them in Settings.",
    ),
    "bug_report": (
        "Please make sure your app and device firmware are up to date, then restart the device.",
        "Sorry for the trouble! Restarting the device and your router fixes most problems.",
    ),
}

#: Confident answers that are wrong (a policy or a step that does not exist).
WRONG_ANSWERS = {
    "order_status": (
        "Your order has been delivered. If you can't find it, it may have been left at a pickup point "
        "nearby.",
        "Orders can only be changed within 1 hour of purchase, so I'm afraid I can't update this one.",
    ),
    "billing": (
        "Double charges are refunded automatically within 24 hours, so there's nothing you need to do.",
        "Protect plans are billed yearly, so the amount you see covers the next 12 months.",
    ),
    "refund": (
        "Refunds are only possible for unopened devices, so I can't offer one for this order.",
        "Your refund was sent to your Acme gift balance, which you can use on your next purchase.",
    ),
    "account_access": (
        "You can reset your password in the Acme Home app under Devices > Reset.",
        "Two-factor authentication can't be turned off or changed once it's enabled.",
    ),
    "bug_report": (
        "This is a hardware fault. Please return the device for a replacement within 30 days of purchase.",
        "Hold the reset button for 10 seconds until the LED blinks blue, then set the device up again.",
    ),
}
