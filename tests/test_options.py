"""``twistd gateway`` options: defaults match the workers' settings, and values the
data plane could not use are refused before anything starts."""

from __future__ import annotations

import os
import pathlib
import re

import pytest
from twisted.internet.testing import MemoryReactorClock
from twisted.python import usage

from twistgw.ipc.settings import SESSION_KEY_ENV, DataPlaneSettings
from twistgw.metrics import Metrics
from twistgw.options import (
    POSITIVE,
    GatewayOptions,
    config_limits,
    data_plane_settings,
    translate_options,
)
from twistgw.sources.limits import ConfigLimits
from twistgw.supervisor.workers import WorkerPool
from twistgw.translate import TranslateOptions


def _parse(config_dir: pathlib.Path, *args: str) -> GatewayOptions:
    options = GatewayOptions()
    options.parseOptions(["--config-dir", str(config_dir), *args])
    return options


def test_defaults_are_the_data_plane_defaults(tmp_path):
    assert data_plane_settings(_parse(tmp_path)) == DataPlaneSettings()


def test_values_reach_the_data_plane_settings(tmp_path):
    settings = data_plane_settings(
        _parse(
            tmp_path,
            "--max-request-line=4096",
            "--max-header-bytes=8192",
            "--max-header-count=50",
            "--request-header-timeout=2.5",
            "--idle-timeout=30",
            "--backend-connect-timeout=1",
            "--backend-response-timeout=5",
            "--headers-with-underscores=reject",
            "--access-log=-",
            "--max-connections=300",
            "--max-connections-per-port=200",
            "--backend-max-connections=20",
            "--backend-max-pending=10",
            "--worker-memory-limit=512",
            "--http2-max-concurrent-streams=50",
            "--http2-stream-window=131072",
            "--http2-connection-window=4194304",
        )
    )
    assert (settings.max_request_line, settings.max_header_bytes) == (4096, 8192)
    assert settings.max_header_count == 50
    assert (settings.header_timeout, settings.idle_timeout) == (2.5, 30.0)
    assert (settings.backend_connect_timeout, settings.backend_response_timeout) == (1.0, 5.0)
    assert (settings.headers_with_underscores, settings.access_log) == ("reject", "-")
    assert (settings.max_connections, settings.max_connections_per_port) == (300, 200)
    assert (settings.backend_max_connections, settings.backend_max_pending) == (20, 10)
    assert settings.worker_memory_limit_mb == 512
    assert (settings.h2_max_concurrent_streams, settings.h2_stream_window) == (50, 131072)
    assert settings.h2_connection_window == 4194304
    assert DataPlaneSettings.from_json(settings.to_json()) == settings


def test_config_limits_default_and_reach_the_source(tmp_path):
    assert config_limits(_parse(tmp_path)) == ConfigLimits()
    limits = config_limits(
        _parse(
            tmp_path,
            "--config-max-file-bytes=1000",
            "--config-max-files=7",
            "--config-max-total-bytes=5000",
            "--config-max-objects=9",
        )
    )
    assert limits == ConfigLimits(
        max_file_bytes=1000, max_files=7, max_total_bytes=5000, max_objects=9
    )


def test_config_limits_are_in_the_help_with_their_defaults():
    text = " ".join(str(GatewayOptions()).split())
    for option, default in [
        ("--config-max-file-bytes=", "4194304"),
        ("--config-max-files=", "10000"),
        ("--config-max-total-bytes=", "33554432"),
        ("--config-max-objects=", "50000"),
    ]:
        assert re.search(rf"{option} [^\[]*\[default: {default}\]", text), option


def test_expansion_bounds_default_and_reach_the_translator(tmp_path):
    found = translate_options(_parse(tmp_path, "--filter-plugins="))  # (what is installed varies)
    assert found == TranslateOptions(max_route_entries=4096, max_table_entries=200_000)
    options = translate_options(
        _parse(
            tmp_path,
            "--route-max-entries=10",
            "--routing-table-max-entries=100",
            "--controller-name=example.com/gw",
            "--address-pool=10.0.0.0/30",
        )
    )
    assert (options.max_route_entries, options.max_table_entries) == (10, 100)
    assert options.controller_name == "example.com/gw"
    assert options.address_pool == ("10.0.0.1", "10.0.0.2")


def test_expansion_bounds_are_in_the_help_with_their_defaults():
    text = " ".join(str(GatewayOptions()).split())
    for option, default in [
        ("--route-max-entries=", "4096"),
        ("--routing-table-max-entries=", "200000"),
    ]:
        assert re.search(rf"{option} [^\[]*\[default: {default}\]", text), option


def test_the_table_holds_at_least_one_largest_route(tmp_path):
    with pytest.raises(usage.UsageError, match="--routing-table-max-entries must be at least"):
        _parse(tmp_path, "--route-max-entries=2000", "--routing-table-max-entries=1999")
    _parse(tmp_path, "--route-max-entries=2000", "--routing-table-max-entries=2000")


def test_the_directory_holds_at_least_one_largest_file(tmp_path):
    with pytest.raises(usage.UsageError, match="--config-max-total-bytes must be at least"):
        _parse(tmp_path, "--config-max-file-bytes=2000", "--config-max-total-bytes=1999")
    _parse(tmp_path, "--config-max-file-bytes=2000", "--config-max-total-bytes=2000")


@pytest.mark.parametrize("name", POSITIVE)
@pytest.mark.parametrize("value", ["0", "-1"])
def test_limits_and_timeouts_must_be_positive(tmp_path, name, value):
    with pytest.raises(usage.UsageError, match=f"--{name} must be positive"):
        _parse(tmp_path, f"--{name}={value}")


def test_the_worker_memory_limit_is_off_or_positive(tmp_path):
    with pytest.raises(usage.UsageError, match="--worker-memory-limit must be 0"):
        _parse(tmp_path, "--worker-memory-limit=-1")


@pytest.mark.parametrize("value", ["65534", "2147483648"])
@pytest.mark.parametrize("name", ["http2-stream-window", "http2-connection-window"])
def test_http2_windows_stay_within_the_protocols_range(tmp_path, name, value):
    with pytest.raises(usage.UsageError, match=f"--{name} must be from 65535 to 2147483647"):
        _parse(tmp_path, f"--{name}={value}")


def test_the_head_holds_at_least_the_request_line(tmp_path):
    with pytest.raises(usage.UsageError, match="--max-header-bytes must be at least"):
        _parse(tmp_path, "--max-request-line=8192", "--max-header-bytes=8191")
    _parse(tmp_path, "--max-request-line=8192", "--max-header-bytes=8192")


def test_headers_with_underscores_is_one_of_three(tmp_path):
    for action in ("drop", "reject", "allow"):
        options = _parse(tmp_path, f"--headers-with-underscores={action}")
        assert options["headers-with-underscores"] == action
    with pytest.raises(usage.UsageError, match="must be one of drop, reject, allow"):
        _parse(tmp_path, "--headers-with-underscores=keep")


def test_access_log_path_is_made_absolute_and_its_directory_must_exist(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert _parse(tmp_path, "--access-log=access.jsonl")["access-log"] == os.path.join(
        os.getcwd(), "access.jsonl"
    )
    assert _parse(tmp_path)["access-log"] == ""
    with pytest.raises(usage.UsageError, match="--access-log: no directory"):
        _parse(tmp_path, f"--access-log={tmp_path / 'missing' / 'access.jsonl'}")


def test_admin_token_is_the_file_content_stripped(tmp_path):
    assert _parse(tmp_path)["admin-token"] is None  # no file: the admin endpoint is open
    token_file = tmp_path / "token"
    token_file.write_text("  s3cret\n")
    assert _parse(tmp_path, f"--admin-token-file={token_file}")["admin-token"] == "s3cret"


def test_a_missing_or_empty_admin_token_file_is_refused(tmp_path):
    with pytest.raises(usage.UsageError, match="--admin-token-file: cannot read"):
        _parse(tmp_path, f"--admin-token-file={tmp_path / 'missing'}")
    (tmp_path / "empty").write_text(" \n")
    with pytest.raises(usage.UsageError, match="--admin-token-file: .* is empty"):
        _parse(tmp_path, f"--admin-token-file={tmp_path / 'empty'}")


def test_tracing_options_reach_the_data_plane_settings(tmp_path):
    settings = data_plane_settings(
        _parse(tmp_path, "--otlp-endpoint=http://127.0.0.1:4318", "--trace-sampling-ratio=0.5")
    )
    assert (settings.otlp_endpoint, settings.trace_sampling_ratio) == (
        "http://127.0.0.1:4318",
        0.5,
    )
    assert settings.trace_propagation  # (implied by the endpoint)
    assert data_plane_settings(_parse(tmp_path, "--trace-propagation")).trace_propagation
    assert not data_plane_settings(_parse(tmp_path)).trace_propagation
    for args, message in [
        (["--otlp-endpoint=127.0.0.1:4318"], "not an http"),
        (["--otlp-endpoint=ftp://collector"], "not an http"),
        (["--trace-sampling-ratio=1.5"], "from 0 to 1"),
        (["--trace-sampling-ratio=-0.1"], "from 0 to 1"),
    ]:
        with pytest.raises(usage.UsageError, match=message):
            _parse(tmp_path, *args)


def test_tracing_options_are_in_the_help():
    text = str(GatewayOptions())
    for option in ("--otlp-endpoint", "--trace-sampling-ratio", "--trace-propagation"):
        assert option in text


def test_proxy_protocol_ports_reach_the_data_plane_settings(tmp_path):
    assert data_plane_settings(_parse(tmp_path)).proxy_protocol == ()
    settings = data_plane_settings(_parse(tmp_path, "--proxy-protocol= 8443,8080,,8080"))
    assert settings.proxy_protocol == (8080, 8443)
    assert DataPlaneSettings.from_json(settings.to_json()) == settings


@pytest.mark.parametrize("value", ["http", "0", "65536", "-1", "80-90", "８０"])
def test_proxy_protocol_ports_are_ports(tmp_path, value):
    with pytest.raises(usage.UsageError, match="--proxy-protocol: .* is not a port"):
        _parse(tmp_path, f"--proxy-protocol={value}")


def test_a_session_key_file_becomes_the_workers_session_key(tmp_path):
    assert _parse(tmp_path)["session-key"] == ""
    key_file = tmp_path / "session.key"
    key_file.write_bytes(b"  " + b"s" * 32 + b"\n")
    options = _parse(tmp_path, f"--session-key-file={key_file}")
    assert data_plane_settings(options).session_key == (b"s" * 32).hex()
    assert "session_key" not in repr(data_plane_settings(options))


def test_a_short_or_missing_session_key_file_is_refused(tmp_path):
    key_file = tmp_path / "session.key"
    key_file.write_bytes(b"s" * 31)
    with pytest.raises(usage.UsageError, match="holds 31 bytes; at least 32"):
        _parse(tmp_path, f"--session-key-file={key_file}")
    with pytest.raises(usage.UsageError, match="--session-key-file: cannot read"):
        _parse(tmp_path, f"--session-key-file={tmp_path / 'missing'}")


class _SpawningReactor(MemoryReactorClock):
    """Records the worker processes it is asked to start."""

    def __init__(self) -> None:
        super().__init__()
        self.spawned: list[tuple[list[str], dict[str, str]]] = []

    def spawnProcess(self, protocol, executable, args, env, childFDs):  # noqa: N802
        self.spawned.append((args, env))
        return type("Process", (), {"pid": 4242 + len(self.spawned)})()


def test_workers_share_one_session_key_kept_off_their_command_line():
    reactor = _SpawningReactor()
    pool = WorkerPool(reactor, 2, 1.0, Metrics())
    key = pool.settings.session_key
    assert len(bytes.fromhex(key)) == 32
    assert WorkerPool(reactor, 1, 1.0, Metrics()).settings.session_key != key  # per start
    pool.spawn(0)
    pool.spawn(1)
    pool.spawn(0)  # (a replacement)
    for args, env in reactor.spawned:
        assert env[SESSION_KEY_ENV] == key
        assert key not in " ".join(args)
        assert DataPlaneSettings.from_json(args[args.index("--settings") + 1]).session_key == ""
    given = DataPlaneSettings(session_key="ab" * 32)
    assert WorkerPool(reactor, 1, 1.0, Metrics(), given).settings.session_key == "ab" * 32
