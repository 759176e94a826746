"""Run the stand-ins (and Azurite) from a shell, for a local demo or manual poking.

    .venv/bin/python -m tests.standins --seed ci-alice --seed ci-bob:Stopped:bob@contoso.com --outbox outbox

Prints the environment the app needs (proxy, CA, credentials, Azurite connection string) and logs
every request until Ctrl-C; then everything is stopped.
"""

from __future__ import annotations

import argparse
import shlex
import time

from .azurite import Azurite
from .stack import StandIns


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m tests.standins", description=__doc__.splitlines()[0])
    parser.add_argument(
        "--seed",
        action="append",
        default=[],
        metavar="NAME[:STATE[:CREATOR]]",
        help="seed a compute instance (repeatable)",
    )
    parser.add_argument("--outbox", help="directory for accepted mails (.json + .html)")
    parser.add_argument("--no-azurite", action="store_true", help="do not start Azurite")
    args = parser.parse_args(argv)

    azurite = None if args.no_azurite else Azurite()
    with StandIns(sendgrid={"outbox_dir": args.outbox} if args.outbox else None) as stack:
        try:
            if azurite is not None:
                azurite.start()
            for spec in args.seed:
                name, state, creator = ([*spec.split(":", 2), "", ""])[:3]
                stack.azureml.seed(name, state=state or "Running", created_by=creator or "alice@contoso.com")
            a = stack.azureml
            # Setting names as in local.settings.json.example.
            env = {
                **stack.env,
                "AZUREML_DEFAULT_RETRIES": "0",
                "tenant_id": a.tenant_id,
                "subscription_id": a.subscription_id,
                "service_principal_id": a.client_id,
                "service_principal_password": a.client_secret,
                "resource_group": a.resource_group,
                "aml_workspace": a.workspace,
                "SENDGRID_API_KEY": stack.sendgrid.api_key,
            }
            if azurite is not None:
                env["AzureWebJobsStorage"] = azurite.connection_string
            for key, value in env.items():
                print(f"export {key}={shlex.quote(value)}")
            print("# serving; Ctrl-C to stop", flush=True)
            shown = 0
            while True:
                time.sleep(0.5)
                records = stack.log
                for rec in records[shown:]:
                    print(rec, flush=True)
                shown = len(records)
        except KeyboardInterrupt:
            pass
        finally:
            if azurite is not None:
                azurite.cleanup()


if __name__ == "__main__":
    main()
