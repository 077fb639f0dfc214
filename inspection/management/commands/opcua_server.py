"""Serve every station's latest final verdict over OPC UA, for PLCs and SCADA."""

from __future__ import annotations

import asyncio
import signal
from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand


class Command(BaseCommand):
    help = (
        "Run a read-only OPC UA server (OPCUA_ENDPOINT, default opc.tcp://0.0.0.0:4840/loupe/) with "
        "one object per station holding its latest final verdict (node ids ns=<urn:loupe>;"
        "s=station/<id>/LastVerdict, LastVerdictId, LastPartSerial, ...)."
    )

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument("--endpoint", default=None, help="overrides OPCUA_ENDPOINT")
        parser.add_argument("--poll", type=float, default=None, help="seconds between reads of new verdicts")

    def handle(self, *args: Any, **options: Any) -> None:
        from inspection.opcua import serve

        endpoint = options["endpoint"] or settings.OPCUA_ENDPOINT
        poll = options["poll"] if options["poll"] is not None else settings.OPCUA_POLL_MS / 1000

        async def main() -> None:
            stop = asyncio.Event()
            loop = asyncio.get_running_loop()
            for sig in (signal.SIGINT, signal.SIGTERM):
                loop.add_signal_handler(sig, stop.set)
            await serve(
                endpoint,
                poll_seconds=poll,
                stop=stop,
                ready=lambda: self.stdout.write(f"serving final verdicts on {endpoint}", ending="\n"),
            )

        asyncio.run(main())
