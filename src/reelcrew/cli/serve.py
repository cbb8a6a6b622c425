"""`reelcrew serve` (the API, the dashboard and the embedded runner in one process) and `reelcrew token`."""

from __future__ import annotations

import ipaddress
import os
import socket

import typer

from reelcrew.cli.app import ConfigOpt, JsonOpt, OutputDirOpt, app, err, open_store, reports_errors, settings_for
from reelcrew.cli.render import print_json
from reelcrew.errors import ConfigError

token_app = typer.Typer(help="API tokens for `reelcrew serve` (stored hashed in the ledger).", no_args_is_help=True)
app.add_typer(token_app, name="token")


def setting(name: str, default: str = "") -> str:
    """A serve setting from the environment, else from ./.env (where the other settings are read too)."""
    from dotenv import dotenv_values

    return os.environ.get(name) or dotenv_values(".env").get(name) or default


def is_loopback(host: str) -> bool:
    try:
        return ipaddress.ip_address(socket.gethostbyname(host)).is_loopback
    except (OSError, ValueError):
        return False


@app.command()
@reports_errors
def serve(
    host: str = typer.Option("127.0.0.1", "--host", help="Address to listen on (127.0.0.1: this machine only)."),
    port: int = typer.Option(8000, "--port", min=1, max=65535, help="Port."),
    output_dir: OutputDirOpt = None,
    config: ConfigOpt = None,
    workers: int = typer.Option(2, "--workers", min=1, max=16, help="Productions worked on at the same time."),
) -> None:
    """Serve the REST API (/api, docs at /docs) and the dashboard (/); runs the work in this process."""
    import uvicorn

    from reelcrew.web import create_app
    from reelcrew.web.auth import Auth

    settings = settings_for(output_dir, config)
    admin = setting("REELCREW_ADMIN_TOKEN") or None
    store = open_store(settings)
    has_tokens = Auth(store, b"", admin).configured()
    store.close()
    if not is_loopback(host) and not has_tokens:
        raise ConfigError(f"refusing to serve on {host} with no token configured: anyone could spend your quota",
                          "set REELCREW_ADMIN_TOKEN (or run `reelcrew token create NAME --role admin`), "
                          "or serve on --host 127.0.0.1")
    origins = [o.strip() for o in setting("REELCREW_CORS_ORIGINS").split(",") if o.strip()]
    rate_text = setting("REELCREW_CREATE_RATE", "30")
    if not rate_text.isdigit() or int(rate_text) < 1:
        raise ConfigError(f"REELCREW_CREATE_RATE={rate_text!r} is not a positive whole number",
                          "set REELCREW_CREATE_RATE to creates per token per minute, e.g. 30")
    rate = int(rate_text)
    web = create_app(settings, config=config, admin_token=admin, cors_origins=origins, workers=workers,
                     create_rate=rate)
    err.print(f"reelcrew serve: http://{host}:{port}/ (API docs at /docs)"
              + ("" if has_tokens else "; no token configured: set REELCREW_ADMIN_TOKEN to log in"))
    uvicorn.run(web, host=host, port=port, log_level="info", timeout_graceful_shutdown=5)


@token_app.command("create")
@reports_errors
def token_create(
    name: str = typer.Argument(..., help="Who or what uses it (recorded in the events of every change it makes)."),
    role: str = typer.Option("viewer", "--role", help="viewer (read), operator (create, approve, retry, cancel) "
                             "or admin (tokens)."),
    daily_budget_usd: float | None = typer.Option(None, "--daily-budget-usd", min=0,
                                                  help="Cap on what this token may approve per UTC day."),
    output_dir: OutputDirOpt = None,
    config: ConfigOpt = None,
) -> None:
    """Create a token and print it once (only its hash is kept)."""
    from reelcrew.web.auth import ROLES, create_token

    if role not in ROLES:
        raise ConfigError(f"unknown role {role!r}", "use --role viewer, operator or admin")
    store = open_store(settings_for(output_dir, config))
    token = create_token(store, name, role, daily_budget_usd)
    if token is None:
        raise ConfigError(f"a token named {name!r} exists", "choose another name")
    store.log_action("token", f"token {name} ({role}) created on the command line", "cli")
    typer.echo(token)


@token_app.command("list")
@reports_errors
def token_list(output_dir: OutputDirOpt = None, config: ConfigOpt = None, as_json: JsonOpt = False) -> None:
    """The tokens: names, roles, budgets and whether revoked (never the secrets: only hashes are kept)."""
    rows = open_store(settings_for(output_dir, config)).token_rows()
    if as_json:
        print_json({"tokens": rows})
        return
    for row in rows:
        budget = "" if row["daily_budget_usd"] is None else f"  ${row['daily_budget_usd']:.2f}/day"
        state = "  revoked" if row["revoked_at"] else ""
        typer.echo(f"{row['name']}  {row['role']}{budget}{state}")


@token_app.command("revoke")
@reports_errors
def token_revoke(
    name: str = typer.Argument(..., help="The token's name (as given to `reelcrew token create`)."),
    output_dir: OutputDirOpt = None,
    config: ConfigOpt = None,
) -> None:
    """Revoke a token: it stops working at once, also in a running `reelcrew serve`; its events keep its name."""
    store = open_store(settings_for(output_dir, config))
    if not store.revoke_token(name):
        raise ConfigError(f"no live token named {name!r}", "list the tokens with `reelcrew token list`")
    store.log_action("token", f"token {name} revoked on the command line", "cli")
    err.print(f"token {name} revoked")
