"""The Hub check asks the way huggingface_hub does: its endpoint (HF_ENDPOINT), its offline switch, and its
HTTP session, which goes through HTTP(S)_PROXY. Each case in a fresh process: huggingface_hub reads the
environment when first imported."""

from __future__ import annotations

import http.server
import os
import subprocess
import sys
import threading

import pytest

CHECK = (
    "import time; from mlm_toolkit.hub import hub_offline_reason; t = time.time(); "
    "print(repr(hub_offline_reason())); print(round(time.time() - t, 1))"
)


@pytest.fixture()
def server():
    """A local HTTP server answering anything with 200, recording the request lines it was sent."""
    seen: list[str] = []

    class Answer(http.server.BaseHTTPRequestHandler):
        def answer(self):
            seen.append(self.requestline)
            self.send_response(200)
            self.send_header("Content-Length", "0")
            self.end_headers()

        do_HEAD = do_GET = answer

        def log_message(self, *args):
            pass

    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Answer)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}", seen
    httpd.shutdown()


def check(**env: str) -> tuple[str, float]:
    clean = {k: v for k, v in os.environ.items() if not k.upper().endswith("_PROXY") and k != "HF_HUB_OFFLINE"}
    done = subprocess.run(
        [sys.executable, "-c", CHECK], env={**clean, **env}, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    reason, seconds = done.stdout.strip().splitlines()[-2:]
    return reason, float(seconds)


def test_the_endpoint_of_hf_endpoint_is_the_one_asked(server):
    url, seen = server
    assert check(HF_ENDPOINT=url)[0] == "None"
    assert seen and seen[0].startswith("HEAD / ")


def test_the_check_goes_through_the_proxy(server):
    proxy, seen = server
    reason, _ = check(HF_ENDPOINT="http://hub.example.invalid", HTTP_PROXY=proxy, NO_PROXY="")
    assert reason == "None", "the proxy answered for the endpoint"
    assert seen == ["HEAD http://hub.example.invalid/ HTTP/1.1"]


def test_an_endpoint_that_does_not_answer_is_named_within_seconds():
    import socket

    with socket.socket() as probe:  # a port nobody listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    reason, seconds = check(HF_ENDPOINT=f"http://127.0.0.1:{port}")
    assert reason == f"'the Hugging Face Hub (http://127.0.0.1:{port}) cannot be reached'" and seconds < 10
    assert check(HF_HUB_OFFLINE="1")[0] == "'HF_HUB_OFFLINE is set'"
