"""Run dynamic providers the way the Pulumi engine does, without the Pulumi CLI: the SDK's own
host (`python -m pulumi.dynamic`) over gRPC, with the dill-serialized provider in `__provider`.
The tests and benchmarks drive ftops' providers through it; it also helps debug a provider."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from typing import Any

import grpc
from google.protobuf import struct_pb2
from pulumi.dynamic.dynamic import serialize_provider
from pulumi.runtime import rpc
from pulumi.runtime.proto import provider_pb2, provider_pb2_grpc

from ftops.providers.base import PROVIDER_KEY


def _struct(props: dict[str, Any]) -> struct_pb2.Struct:
    return asyncio.run(rpc.serialize_properties(props, {}))


def _plain(struct: struct_pb2.Struct) -> dict[str, Any]:
    props = rpc.deserialize_properties(struct, True)
    return {k: v for k, v in props.items() if k != PROVIDER_KEY}


@dataclass
class HostError(Exception):
    details: str

    def __str__(self) -> str:
        return self.details


class DynamicHost:
    def __init__(self, env: dict[str, str] | None = None) -> None:
        # Providers log (pulumi.log) to stderr when no engine listens; a file never fills up and blocks.
        self.log = tempfile.TemporaryFile()  # noqa: SIM115 - lives as long as the host; closed in close()
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "pulumi.dynamic"],
            stdout=subprocess.PIPE,
            stderr=self.log,
            stdin=subprocess.DEVNULL,
            env={**os.environ, "PULUMI_PROJECT": "ftops", **(env or {})},
        )
        first = self.proc.stdout.readline().decode().strip() if self.proc.stdout else ""
        if not first.isdigit():
            self.proc.kill()
            self.proc.wait()
            raise RuntimeError(f"the dynamic provider host did not start: {self.logged()[-2000:]}")
        port = int(first)

        self.channel = grpc.insecure_channel(f"127.0.0.1:{port}")
        self.stub = provider_pb2_grpc.ResourceProviderStub(self.channel)
        self.stub.Configure(provider_pb2.ConfigureRequest(args=_struct({})))

    def _props(self, provider: Any, props: dict[str, Any]) -> struct_pb2.Struct:
        return _struct({**props, PROVIDER_KEY: serialize_provider(provider)})

    def _call(self, method: str, request: Any, timeout: float | None = None) -> Any:
        try:
            return getattr(self.stub, method)(request, timeout=timeout)
        except grpc.RpcError as exc:
            raise HostError(str(exc.details() if hasattr(exc, "details") else exc)) from None

    def check(
        self, provider: Any, olds: dict[str, Any], news: dict[str, Any]
    ) -> tuple[dict[str, Any], list[tuple[str, str]]]:
        response = self._call(
            "Check",
            provider_pb2.CheckRequest(
                urn="urn:pulumi:test::ftops::x::r",
                olds=self._props(provider, olds),
                news=self._props(provider, news),
            ),
        )
        return _plain(response.inputs), [(f.property, f.reason) for f in response.failures]

    def create(
        self, provider: Any, props: dict[str, Any], timeout: float | None = None
    ) -> tuple[str, dict[str, Any]]:
        response = self._call(
            "Create",
            provider_pb2.CreateRequest(
                urn="urn:pulumi:test::ftops::x::r", properties=self._props(provider, props)
            ),
            timeout,
        )
        return response.id, _plain(response.properties)

    def read(self, provider: Any, id_: str, props: dict[str, Any]) -> tuple[str, dict[str, Any]]:
        response = self._call(
            "Read",
            provider_pb2.ReadRequest(
                id=id_, urn="urn:pulumi:test::ftops::x::r", properties=self._props(provider, props)
            ),
        )
        return response.id, _plain(response.properties)

    def diff(self, provider: Any, id_: str, olds: dict[str, Any], news: dict[str, Any]) -> Any:
        """The engine's DiffResponse (`changes`, `replaces`, `DIFF_NONE` / `DIFF_SOME`)."""
        return self._call(
            "Diff",
            provider_pb2.DiffRequest(
                id=id_,
                urn="urn:pulumi:test::ftops::x::r",
                olds=self._props(provider, olds),
                news=self._props(provider, news),
            ),
        )

    def update(self, provider: Any, id_: str, olds: dict[str, Any], news: dict[str, Any]) -> dict[str, Any]:
        response = self._call(
            "Update",
            provider_pb2.UpdateRequest(
                id=id_,
                urn="urn:pulumi:test::ftops::x::r",
                olds=self._props(provider, olds),
                news=self._props(provider, news),
            ),
        )
        return _plain(response.properties)

    def delete(self, provider: Any, id_: str, props: dict[str, Any]) -> None:
        self._call(
            "Delete",
            provider_pb2.DeleteRequest(
                id=id_, urn="urn:pulumi:test::ftops::x::r", properties=self._props(provider, props)
            ),
        )

    def kill(self) -> None:
        """What a crash or a cancelled CI job does to the provider: no cleanup, no goodbye."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait()
        self.channel.close()

    def logged(self) -> str:
        """What the providers logged (pulumi.log goes to stderr without an engine)."""
        self.log.seek(0)
        return self.log.read().decode(errors="replace")

    def close(self) -> None:
        self.kill()
        self.log.close()
