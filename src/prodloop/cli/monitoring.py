"""``prodloop monitor …`` and ``prodloop alert …``: stored monitors, their runs, and the alerts they
raise. Each command parses its input, calls one function of ``prodloop.monitoring`` and prints the
result; ``--format json`` prints that result as it is."""

from __future__ import annotations

import getpass
from datetime import datetime
from pathlib import Path
from typing import Annotated, Any, Literal

import typer
from rich.markup import escape
from rich.table import Column, Table

from prodloop.cli.common import (
    DbOption,
    ProjectOption,
    console,
    err,
    open_store_for_command,
    print_json,
    project_of,
)

monitor_app = typer.Typer(
    help="Monitors: drift, decay and outcome checks on a schedule.", no_args_is_help=True
)
alert_app = typer.Typer(
    help="Alerts raised by monitors, and routing their slices to queues.", no_args_is_help=True
)

TableOrJson = Annotated[Literal["table", "json"], typer.Option("--format", help="table or json.")]
MonitorArgument = Annotated[str, typer.Argument(help="Monitor name (or id).", show_default=False)]
AlertArgument = Annotated[int, typer.Argument(help="Alert id.", show_default=False)]
_STATUS_STYLE = {
    "open": "bold red",
    "acknowledged": "yellow",
    "resolved": "green",
    "ok": "green",
    "failed": "red",
}


def _styled(status: str) -> str:
    return f"[{_STATUS_STYLE.get(status, 'white')}]{status}[/]"


def _text(value: Any) -> str:
    return "—" if value is None or value == "" else escape(str(value))


# --------------------------------------------------------------------------------------------------
# prodloop monitor


@monitor_app.command("create")
def monitor_create(
    ctx: typer.Context,
    file: Annotated[Path, typer.Argument(help="The monitor's definition, YAML or JSON.", show_default=False)],
    replace: Annotated[bool, typer.Option(help="Replace a monitor of the same name.")] = False,
    project: ProjectOption = "default",
    output: TableOrJson = "table",
    db: DbOption = None,
) -> None:
    """Store a monitor from a YAML file (see docs/monitoring.md for the fields)."""
    from prodloop.monitoring import read_definition_file, save_monitor

    document = read_definition_file(file)
    engine = open_store_for_command(ctx, db)
    monitor, created = save_monitor(
        engine, project_of(engine, project, create=True), document, replace=replace
    )
    if output == "json":
        print_json(monitor)
        return
    verb = "created" if created else "replaced"
    schedule = (
        f"runs every {monitor['definition']['schedule']} (next {monitor['next_run']})"
        if monitor["schedule_seconds"]
        else "runs when asked: prodloop monitor run " + escape(monitor["name"])
    )
    console.print(
        f"{verb} monitor [bold]{escape(monitor['name'])}[/bold] for {escape(monitor['feature'])}; {schedule}"
    )


@monitor_app.command("ls")
def monitor_ls(
    ctx: typer.Context,
    feature: Annotated[str | None, typer.Option(help="Only this feature's monitors.")] = None,
    project: ProjectOption = "default",
    output: TableOrJson = "table",
    db: DbOption = None,
) -> None:
    """List monitors with their schedule, last run and open alerts."""
    from prodloop.monitoring import list_monitors

    engine = open_store_for_command(ctx, db)
    monitors = list_monitors(engine, project_of(engine, project), feature)
    if output == "json":
        print_json(monitors)
        return
    if not monitors:
        err.print("no monitors yet; create one with `prodloop monitor create FILE`")
        return
    table = Table(
        Column("name", no_wrap=True),
        "feature",
        Column("checks", ratio=1),
        "every",
        Column("last run", no_wrap=True),
        Column("open", justify="right"),
    )
    for m in monitors:
        last = m["last_run"]
        checks = list(dict.fromkeys(c["type"] for c in m["definition"]["checks"]))
        table.add_row(
            escape(m["name"]),
            escape(m["feature"]),
            escape(", ".join(checks)),
            escape(m["definition"].get("schedule", "—")) + ("" if m["enabled"] else " (paused)"),
            f"{_styled(last['status'])} {last['as_of'][:10]}" if last else "—",
            str(m["open_alerts"]),
        )
    console.print(table)


@monitor_app.command("show")
def monitor_show(
    ctx: typer.Context,
    monitor: MonitorArgument,
    project: ProjectOption = "default",
    db: DbOption = None,
) -> None:
    """Print a monitor with its definition (JSON)."""
    from prodloop.monitoring import get_monitor

    engine = open_store_for_command(ctx, db)
    print_json(get_monitor(engine, project_of(engine, project), monitor))


@monitor_app.command("run")
def monitor_run(
    ctx: typer.Context,
    monitor: MonitorArgument,
    as_of: Annotated[
        datetime | None, typer.Option("--as-of", help="Run as of this time (default: now), to backfill.")
    ] = None,
    route: Annotated[bool, typer.Option(help="Route new alerts to the monitor's queue.")] = True,
    project: ProjectOption = "default",
    output: TableOrJson = "table",
    db: DbOption = None,
) -> None:
    """Run a monitor now, store the run and raise its alerts."""
    from prodloop.monitoring import run_monitor

    engine = open_store_for_command(ctx, db)
    pid = project_of(engine, project)
    with console.status(f"running monitor {escape(monitor)}…"):
        run = run_monitor(engine, pid, monitor, as_of=as_of, route=route)
    if output == "json":
        print_json(run)
        return
    window = run["results"]["window"]
    console.print(
        f"run {run['id']} {_styled(run['status'])} in {run['seconds']:.1f} s; current window "
        f"{window['current'][0]} to {window['current'][1]}"
    )
    for check in run["results"]["checks"]:
        if check["status"] == "failed":
            console.print(f"  [red]✗[/] {escape(check['check'])}: {escape(check['error'])}")
            continue
        found = check.get("findings", [])
        mark = "[red]![/]" if found else "[green]✓[/]"
        console.print(f"  {mark} {escape(check['check'])}: {len(found)} finding(s)")
        for f in found:
            console.print(
                f"      [{'red' if f['severity'] == 'critical' else 'yellow'}]{escape(f['title'])}[/]"
            )
    alerts = run["alerts"]
    console.print(
        f"alerts: {len(alerts['opened'])} opened, {len(alerts['seen'])} seen again, "
        f"{len(alerts['resolved'])} resolved"
    )
    for routed in run["routed"]:
        if "error" in routed:
            err.print(f"alert {routed['alert_id']} was not routed: {escape(routed['error'])}")
        else:
            console.print(
                f"alert {routed['alert_id']}: {routed['added']} items sent to queue {escape(routed['queue'])}"
            )


@monitor_app.command("runs")
def monitor_runs(
    ctx: typer.Context,
    monitor: MonitorArgument,
    limit: Annotated[int, typer.Option(help="How many, newest first.")] = 20,
    project: ProjectOption = "default",
    output: TableOrJson = "table",
    db: DbOption = None,
) -> None:
    """A monitor's runs, newest first."""
    from prodloop.monitoring import list_runs

    engine = open_store_for_command(ctx, db)
    runs = list_runs(engine, project_of(engine, project), monitor, limit)
    if output == "json":
        print_json(runs)
        return
    table = Table("run", "status", "as of", "seconds", "error")
    for r in runs:
        table.add_row(
            str(r["id"]), _styled(r["status"]), r["as_of"], f"{r['seconds']:.2f}", _text(r["error"])
        )
    console.print(table)


def _set_enabled(ctx: typer.Context, monitor: str, enabled: bool, project: str, db: str | None) -> None:
    from prodloop.monitoring import set_monitor_enabled

    engine = open_store_for_command(ctx, db)
    m = set_monitor_enabled(engine, project_of(engine, project), monitor, enabled)
    console.print(f"monitor {escape(m['name'])} {'resumed' if enabled else 'paused'}")


@monitor_app.command("enable")
def monitor_enable(
    ctx: typer.Context, monitor: MonitorArgument, project: ProjectOption = "default", db: DbOption = None
) -> None:
    """Resume a paused monitor (a scheduled one runs at once)."""
    _set_enabled(ctx, monitor, True, project, db)


@monitor_app.command("disable")
def monitor_disable(
    ctx: typer.Context, monitor: MonitorArgument, project: ProjectOption = "default", db: DbOption = None
) -> None:
    """Pause a monitor: the worker stops running it."""
    _set_enabled(ctx, monitor, False, project, db)


# --------------------------------------------------------------------------------------------------
# prodloop alert


@alert_app.command("ls")
def alert_ls(
    ctx: typer.Context,
    status: Annotated[
        str | None, typer.Option(help="open, acknowledged, resolved or unresolved (default: all).")
    ] = None,
    monitor: Annotated[str | None, typer.Option(help="Only this monitor's alerts.")] = None,
    feature: Annotated[str | None, typer.Option(help="Only alerts of this feature's monitors.")] = None,
    project: ProjectOption = "default",
    output: TableOrJson = "table",
    db: DbOption = None,
) -> None:
    """List alerts, newest first."""
    from prodloop.monitoring import list_alerts

    engine = open_store_for_command(ctx, db)
    alerts = list_alerts(engine, project_of(engine, project), status=status, monitor=monitor, feature=feature)
    if output == "json":
        print_json(alerts)
        return
    if not alerts:
        err.print("no alerts")
        return
    table = Table(
        "id",
        "status",
        Column("monitor", no_wrap=True),
        Column("opened", no_wrap=True),
        Column("seen", justify="right"),
        Column("title", ratio=1),
    )
    for a in alerts:
        title = f"[{'red' if a['severity'] == 'critical' else 'yellow'}]{escape(a['title'])}[/]"
        if a["routed_items"]:
            title += f" [dim](sent {a['routed_items']} items to a queue)[/]"
        table.add_row(
            str(a["id"]),
            _styled(a["status"]),
            escape(a["monitor"] or ""),
            (a["opened_at"] or "")[:10],
            str(a["occurrences"]),
            title,
        )
    console.print(table)


@alert_app.command("show")
def alert_show(
    ctx: typer.Context, alert: AlertArgument, project: ProjectOption = "default", db: DbOption = None
) -> None:
    """Print an alert with its slice and events (JSON)."""
    from prodloop.monitoring import get_alert

    engine = open_store_for_command(ctx, db)
    print_json(get_alert(engine, project_of(engine, project), alert))


def _who(by: str | None) -> str:
    return by or getpass.getuser()


def _change_alert(
    ctx: typer.Context, to: str, alert: int, note: str | None, by: str | None, project: str, db: str | None
) -> None:
    """Acknowledge or resolve ``alert`` and say who did."""
    from prodloop.monitoring import acknowledge_alert, resolve_alert

    change = acknowledge_alert if to == "acknowledged" else resolve_alert
    engine = open_store_for_command(ctx, db)
    a = change(engine, project_of(engine, project), alert, _who(by), note)
    console.print(f"alert {a['id']} {_styled(a['status'])} by {escape(a[f'{to}_by'])}")


ByOption = Annotated[str | None, typer.Option("--by", help="Who (default: your user name).")]
NoteOption = Annotated[str | None, typer.Option("--note", help="Why, for the alert's history.")]


@alert_app.command("ack")
def alert_ack(
    ctx: typer.Context,
    alert: AlertArgument,
    note: NoteOption = None,
    by: ByOption = None,
    project: ProjectOption = "default",
    db: DbOption = None,
) -> None:
    """Acknowledge an alert: someone is on it."""
    _change_alert(ctx, "acknowledged", alert, note, by, project, db)


@alert_app.command("resolve")
def alert_resolve(
    ctx: typer.Context,
    alert: AlertArgument,
    note: NoteOption = None,
    by: ByOption = None,
    project: ProjectOption = "default",
    db: DbOption = None,
) -> None:
    """Resolve an alert; if its problem is found again, a new alert opens."""
    _change_alert(ctx, "resolved", alert, note, by, project, db)


@alert_app.command("route")
def alert_route(
    ctx: typer.Context,
    alert: AlertArgument,
    queue: Annotated[str, typer.Option("--queue", help="Queue name (or id).", show_default=False)],
    items: Annotated[int, typer.Option(help="How many traces to send, stratified.")] = 50,
    priority: Annotated[int, typer.Option(help="Priority of the new items.")] = 0,
    by: ByOption = None,
    project: ProjectOption = "default",
    output: TableOrJson = "table",
    db: DbOption = None,
) -> None:
    """Send a stratified sample of the alert's slice to an annotation queue, each item linked to it."""
    from prodloop.monitoring import route_alert

    engine = open_store_for_command(ctx, db)
    routed = route_alert(
        engine, project_of(engine, project), alert, queue, items=items, priority=priority, actor=_who(by)
    )
    if output == "json":
        print_json(routed)
        return
    console.print(
        f"sent {routed['added']} traces of alert {alert} to queue {escape(routed['queue'])} "
        f"({routed['skipped']} already there; {len(routed['strata'])} strata)"
    )
