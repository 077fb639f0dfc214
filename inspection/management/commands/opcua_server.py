"""Serve every station's latest final verdict over OPC UA, for PLCs and SCADA."""

from __future__ import annotations

import asyncio
import signal
from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError


class Command(BaseCommand):
    help = (
        "Run a read-only OPC UA server (OPCUA_ENDPOINT, default opc.tcp://0.0.0.0:4840/loupe/) with "
        "one object per station holding its latest final verdict (node ids ns=<urn:loupe>;"
        "s=station/<id>/LastVerdict, LastVerdictId, LastPartSerial, ...). OPCUA_SECURITY, OPCUA_CERT_DIR, "
        "OPCUA_PROJECT and OPCUA_ANONYMOUS set who may connect."
    )

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument("--endpoint", default=None, help="overrides OPCUA_ENDPOINT")
        parser.add_argument("--poll", type=float, default=None, help="seconds between reads of new verdicts")
        parser.add_argument(
            "--project", default=None, help="serve this project's stations only (overrides OPCUA_PROJECT)"
        )
        parser.add_argument(
            "--status-every",
            type=float,
            default=10.0,
            help="seconds between refreshes of the stations and their status (open reviews, drift)",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        from inspection.models import Project
        from inspection.opcua import Security, serve, thumbprint

        endpoint = options["endpoint"] or settings.OPCUA_ENDPOINT
        poll = options["poll"] if options["poll"] is not None else settings.OPCUA_POLL_MS / 1000
        project_name = options["project"] or settings.OPCUA_PROJECT
        project_id = None
        if project_name:
            project = Project.objects.filter(name=project_name).first()
            if project is None:
                raise CommandError(f"No project named {project_name!r}.")
            project_id = project.pk
        security = Security(
            mode=settings.OPCUA_SECURITY,
            cert_dir=settings.OPCUA_CERT_DIR,
            anonymous=settings.OPCUA_ANONYMOUS,
            project_id=project_id,
        )
        if security.problems():
            raise CommandError("Cannot serve OPC UA: " + "; ".join(security.problems()) + ".")

        def ready(server: Any) -> None:
            if server.certificate is not None:
                self.stdout.write(
                    f"server certificate {server.certificate} (SHA-1 thumbprint {thumbprint(server.certificate)}); "
                    f"trusted client certificates go in {server.certificate.parent / 'trusted'}",
                    ending="\n",
                )
            who = "anonymous" if security.anonymous else f"members of {project_name!r} signing in"
            scope = f"project {project_name!r}" if project_name else "every project"
            self.stdout.write(
                f"serving final verdicts on {endpoint} ({scope}; security {security.mode}; {who})", ending="\n"
            )

        async def main() -> None:
            stop = asyncio.Event()
            loop = asyncio.get_running_loop()
            for sig in (signal.SIGINT, signal.SIGTERM):
                loop.add_signal_handler(sig, stop.set)
            await serve(
                endpoint,
                poll_seconds=poll,
                stop=stop,
                ready=ready,
                security=security,
                status_every_s=options["status_every"],
            )

        asyncio.run(main())
