"""Request ids: the caller's kept only in upstream's form, carried by RPC messages, written in every log line."""
from __future__ import annotations

import asyncio
import json
import logging

from kilonova.common import logs, request_ids, rpc_rabbit
from kilonova.common.rpc import InProcessTransport, RPCClient

GIVEN = "req-0f1e2d3c-4b5a-4968-8776-a5b4c3d2e1f0"


def test_a_callers_id_is_kept_only_in_the_req_uuid_form():
    assert request_ids.for_request(GIVEN).global_request_id == GIVEN
    for bad in (None, "", "abc", GIVEN.upper(), GIVEN + "0", "req-" + "x" * 36, GIVEN.replace("-", "_")):
        ids = request_ids.for_request(bad)
        assert ids.global_request_id is None and request_ids.valid(ids.request_id)
    assert request_ids.for_request(GIVEN).request_id != GIVEN


class _Endpoint:
    async def who(self) -> dict:
        ids = request_ids.current()
        return {} if ids is None else ids.to_rpc()


async def test_an_rpc_handler_runs_under_the_ids_of_the_sender_and_then_forgets_them():
    transport = InProcessTransport()
    await transport.serve("probe", _Endpoint(), concurrency=1)
    client = RPCClient(transport, "probe", timeout=5)
    try:
        bound = request_ids.bind(request_ids.RequestIds("req-local", GIVEN, "user", "project"))
        try:
            assert await client.call("who") == {"request_id": "req-local", "global_request_id": GIVEN,
                                                "user_id": "user", "project_id": "project"}
        finally:
            request_ids.reset(bound)
        assert await client.call("who") == {}   # the same worker, a message sent outside any request
    finally:
        await transport.close()


def test_a_rabbit_envelope_carries_the_ids_and_its_receiver_binds_them():
    bound = request_ids.bind(request_ids.RequestIds("req-local", GIVEN, "user", "project"))
    try:
        body = rpc_rabbit.encode("who", {"a": 1}, "1.0")
    finally:
        request_ids.reset(bound)
    assert json.loads(body)["ctx"]["global_request_id"] == GIVEN

    def receive():
        assert rpc_rabbit.decode(body) == ("who", {"a": 1}, "1.0")
        return request_ids.current()
    received = asyncio.run(asyncio.to_thread(receive))
    assert (received.request_id, received.global_request_id, received.project_id) == ("req-local", GIVEN, "project")


def _record(message: str) -> logging.LogRecord:
    record = logging.LogRecord("kilonova.test", logging.INFO, __file__, 1, message, (), None)
    logs.RequestIdsFilter().filter(record)
    return record


def test_log_lines_carry_the_ids_as_text_and_as_json():
    text = logging.Formatter(logs.TEXT_FORMAT)
    assert "[- - - -] outside" in text.format(_record("outside"))
    bound = request_ids.bind(request_ids.RequestIds("req-local", None, "user", "project"))
    try:
        record = _record("inside")
    finally:
        request_ids.reset(bound)
    assert "[- req-local user project] inside" in text.format(record)
    entry = json.loads(logs.JSONFormatter().format(record))
    assert entry["message"] == "inside" and entry["request_id"] == "req-local"
    assert entry["global_request_id"] is None and entry["level"] == "INFO"


def test_an_unknown_log_format_is_refused_at_start_in_one_line(tmp_path, capsys):
    import pytest

    from kilonova import cli

    config = tmp_path / "kilonova.conf"
    config.write_text("[DEFAULT]\nlog_format = xml\n")
    with pytest.raises(SystemExit) as stopped:
        cli.main(["--config", str(config), "--state-dir", str(tmp_path / "state"), "serve", "placement"])
    assert stopped.value.code == 2
    assert capsys.readouterr().err.strip() == ("kilonova: configuration error: [DEFAULT] log_format = 'xml': "
                                               "must be one of text, json")
