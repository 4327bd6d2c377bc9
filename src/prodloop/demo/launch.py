"""The Acme Vault, a smart lock that Acme Home launches on day 20 of the scenario.

The help center has no article about it and the assistant's prompt does not name it. Retrieval
returns the nearest unrelated articles (pairing a Hub device, doorbell batteries, two-factor codes),
and the assistant answers with hedges, generic advice, or confident instructions for another device.
That, not a painted-on number, is why the handled rate falls after the launch.
"""

from __future__ import annotations

from prodloop.demo.catalog import Topic

PRODUCT = "Acme Vault"
INTENT = "acme_vault"

VAULT_TOPICS: tuple[Topic, ...] = (
    Topic(
        "vault_pairing",
        INTENT,
        (
            "How do I pair my new Acme Vault with the app? It doesn't show up when I search for devices.",
            "acme vault wont pair with my phone",
        ),
        (
            "The Vault pairs over Bluetooth first: open Add device > Locks, then press the Vault's keypad "
            "logo for 3 s.",
        ),
        None,
        wrong=(
            "To pair your Acme Vault, hold the reset button for 10 seconds until the LED blinks blue, then "
            "add it from the Acme Home app while your phone is on 2.4 GHz Wi-Fi.",
        ),
        misleading=("kb-devices-001", "kb-devices-002", "kb-devices-009"),
    ),
    Topic(
        "vault_autolock",
        INTENT,
        ("My Acme Vault doesn't auto-lock even though auto-lock is turned on.",),
        (
            "Auto-lock needs the door sensor calibrated: Vault settings > Door sensor > Calibrate, with the "
            "door shut.",
        ),
        None,
        wrong=(
            "Auto-lock follows your automation schedule. Open the Automations tab, select the schedule and "
            "tap Enable to switch it back on.",
        ),
        misleading=("kb-devices-003", "kb-devices-006", "kb-devices-005"),
    ),
    Topic(
        "vault_guest_code",
        INTENT,
        (
            "How do I create a temporary keypad code for my cleaner on the Vault?",
            "Can I give my dog walker a code for the acme vault that only works on weekdays?",
        ),
        (
            "In Vault settings > Access codes > Add guest code you can set a code with days and hours it "
            "works.",
        ),
        None,
        wrong=(
            "Temporary codes are sent by SMS. Update the phone number on your account in Security, and the "
            "code will be texted to you each time.",
        ),
        misleading=("kb-account-002", "kb-account-004", "kb-account-001"),
    ),
    Topic(
        "vault_fingerprint",
        INTENT,
        ("The Vault fingerprint reader doesn't recognise my fingerprint half the time.",),
        (
            "Enrol the same finger twice at different angles in Vault settings > Fingerprints; it fixes "
            "most misses.",
        ),
        None,
        wrong=("Clean the lens with a soft cloth and turn off IR if the device is behind a window.",),
        misleading=("kb-devices-008", "kb-devices-004", "kb-devices-009"),
    ),
    Topic(
        "vault_battery",
        INTENT,
        (
            "Acme Vault battery drained in {n_days} days. Is that normal?",
            "vault batteries dead already?? i installed it {date}",
        ),
        (
            "No: 4 AA lithium batteries last about 6 months. Alkaline cells drain in days; please switch to "
            "lithium.",
        ),
        None,
        wrong=(
            "The battery lasts 2-4 months. Charge it fully with a USB-C cable and shrink the motion zone in "
            "settings to make it last longer.",
        ),
        misleading=("kb-devices-007", "kb-devices-002", "kb-devices-003"),
    ),
    Topic(
        "vault_fit",
        INTENT,
        ("Will the Acme Vault fit my door? It's {thickness} mm thick.",),
        ("The Vault fits doors 35-55 mm thick; thicker doors need the extension kit from the Acme store.",),
        None,
        wrong=(
            "All Acme devices fit standard installations. You can return it free within 30 days if it "
            "doesn't.",
        ),
        misleading=("kb-refunds-001", "kb-orders-002", "kb-devices-001"),
    ),
    Topic(
        "vault_door_sensor",
        INTENT,
        ("The Vault's door sensor says the door is open when it's closed.",),
        ("Recalibrate it in Vault settings > Door sensor with the door fully shut and the bolt retracted.",),
        None,
        wrong=("Sensor readings can be corrected by up to 3° in Settings > Sensor offset.",),
        misleading=("kb-devices-006", "kb-devices-005", "kb-devices-002"),
    ),
    Topic(
        "vault_bridge",
        INTENT,
        ("Can the Acme Vault work with the Acme Hub or do I need the Vault Bridge?",),
        (
            "The Hub works as the Vault's bridge after a firmware update; you don't need the separate Vault "
            "Bridge.",
        ),
        None,
        wrong=(
            "Every Acme device needs the Vault Bridge for remote access, and it is sold separately in the "
            "Acme store.",
        ),
        misleading=("kb-devices-001", "kb-devices-003", "kb-billing-002"),
    ),
    Topic(
        "vault_locked_out",
        INTENT,
        (
            "I got locked out — the Vault keypad is unresponsive and the app says 'device unreachable'. How "
            "do I get in??",
            "LOCKED OUT. acme vault dead. what do i do",
        ),
        (
            "Hold a 9V battery to the two contacts under the keypad to power it, then enter your code or "
            "use the key.",
        ),
        None,
        wrong=(
            "Accounts unlock automatically 30 minutes after the last attempt, or right away with a reset "
            "link from your email.",
        ),
        misleading=("kb-account-003", "kb-account-001", "kb-devices-002"),
    ),
    Topic(
        "vault_firmware_beeps",
        INTENT,
        ("My vault firmware update failed and now the lock beeps 3 times every time I use it.",),
        ("Three beeps mean the update is incomplete: open Vault settings > Firmware and tap Retry update.",),
        None,
        wrong=("Keep the device powered and unplug it for 10 seconds; the update resumes when it restarts.",),
        misleading=("kb-devices-003", "kb-devices-009", "kb-devices-004"),
    ),
    Topic(
        "vault_share_family",
        INTENT,
        ("How do I share access to my Acme Vault with my family?",),
        ("Invite them in Settings > Household, then give each member a role in Vault settings > Access.",),
        None,
        wrong=(
            "Open Settings > Household > Invite member and enter their email; they'll see all your devices.",
        ),
        misleading=("kb-account-004", "kb-account-005", "kb-account-002"),
    ),
    Topic(
        "vault_history",
        INTENT,
        ("Is there a way to see who unlocked the Vault and when?",),
        ("Yes: Vault > Activity lists every unlock with the code, fingerprint or person that opened it.",),
        None,
        wrong=("Sign-in history is in Settings > Security, where you can also sign out all devices.",),
        misleading=("kb-account-005", "kb-devices-005", "kb-account-003"),
    ),
    Topic(
        "vault_preorder",
        INTENT,
        (
            "When does the Acme Vault ship? I pre-ordered it {date}.",
            "any update on my Acme Vault pre-order {order}?",
        ),
        (
            "Pre-orders ship in the order they were placed; yours ships this week and you'll get a tracking "
            "email.",
        ),
        None,
        wrong=(
            "Orders usually arrive within 3-5 business days; yours has been delivered to a nearby pickup "
            "point.",
        ),
        misleading=("kb-orders-001", "kb-orders-002", "kb-orders-005"),
    ),
)

#: What the assistant says when it finds nothing about the product (the v2 prompt asks for this).
HEDGES = (
    "I'm sorry, I couldn't find information about that in our help center. Could you tell me which Acme "
    "device you're using?",
    "I don't have details about the Acme Vault yet. I can connect you with a support agent who can help.",
    "I'm not sure about that one. Please check the manual that came with your device, or reply 'agent' and "
    "I'll hand you over to our team.",
    "Thanks for your question! I don't have specific instructions for this product, but our support team "
    "can help you at support.acme.example.",
)

#: Generic advice that sometimes helps and usually does not.
GENERIC_ADVICE = (
    "Please make sure the Acme Home app is updated to the latest version, then restart your device and try "
    "again.",
    "Try removing the device from the app and adding it again. Make sure Bluetooth and Wi-Fi are turned on.",
    "Replacing the batteries and restarting the device fixes most issues. Let me know if it still happens.",
)
