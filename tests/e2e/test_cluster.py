"""The production recipe, on loopback: two snip hosts behind deploy/nginx/snip.conf, one Redis.

nginx runs the repository's own site file (only addresses, ports and certificate paths are
swapped for loopback ones), so a broken deploy config fails here.
"""

from __future__ import annotations

import contextlib
import json
import re
import secrets
import ssl
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

from tests.helpers import (
    free_port,
    http,
    metric_samples,
    required_binary,
    serving,
    snip_env,
    sqlite_url,
)
from tests.redis_service import redis_url

ROOT = Path(__file__).resolve().parents[2]
SITE = ROOT / "deploy" / "nginx" / "snip.conf"


def _nginx() -> str:
    return required_binary("nginx", "apt-get install nginx", "/usr/sbin/nginx")


def _site(upstreams: list[int], http_port: int, https_port: int, cert: Path, key: Path) -> str:
    text = SITE.read_text()
    servers = re.findall(r"^\s*server 10\.0\.0\.\d+:8000.*$", text, flags=re.M)
    assert len(servers) == 2, "the site file's upstream changed shape; update this test"
    for line, port in zip(servers, upstreams, strict=True):
        text = text.replace(line, f"    server 127.0.0.1:{port} max_fails=3 fail_timeout=10s;")
    text = text.replace("listen 80;", f"listen 127.0.0.1:{http_port};")
    text = text.replace("listen 443 ssl http2;", f"listen 127.0.0.1:{https_port} ssl http2;")
    text = re.sub(r"^\s*listen \[::\]:\d+.*$", "", text, flags=re.M)
    text = text.replace("/etc/ssl/snip/fullchain.pem", str(cert))
    text = text.replace("/etc/ssl/snip/privkey.pem", str(key))
    return text


@contextlib.contextmanager
def nginx_with(site: str, tmp: Path) -> Iterator[None]:
    binary = _nginx()
    for sub in ("logs", "temp"):
        (tmp / sub).mkdir(exist_ok=True)
    (tmp / "snip.conf").write_text(site)
    (tmp / "nginx.conf").write_text(f"""
pid {tmp}/nginx.pid;
error_log {tmp}/logs/error.log warn;
worker_processes 1;
events {{ worker_connections 256; }}
http {{
    access_log off;
    client_body_temp_path {tmp}/temp/body;
    proxy_temp_path {tmp}/temp/proxy;
    fastcgi_temp_path {tmp}/temp/fastcgi;
    uwsgi_temp_path {tmp}/temp/uwsgi;
    scgi_temp_path {tmp}/temp/scgi;
    include {tmp}/snip.conf;
}}
""")
    check = subprocess.run([binary, "-t", "-c", str(tmp / "nginx.conf"), "-p", str(tmp)],
                           capture_output=True, text=True, timeout=30)
    assert check.returncode == 0, f"nginx -t refused the site file:\n{check.stderr}"
    process = subprocess.Popen([binary, "-c", str(tmp / "nginx.conf"), "-p", str(tmp),
                                "-g", "daemon off;"], stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL)
    try:
        yield
    finally:
        process.terminate()
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(5)


def _https(method: str, url: str, body: bytes | None = None) -> tuple[int, dict[str, str], bytes]:
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE

    class NoRedirect(urllib.request.HTTPRedirectHandler):
        def redirect_request(self, *args: object, **kwargs: object) -> None:
            return None

    opener = urllib.request.build_opener(urllib.request.HTTPSHandler(context=context),
                                         urllib.request.ProxyHandler({}), NoRedirect())
    request = urllib.request.Request(url, data=body, method=method,
                                     headers={"Content-Type": "application/json"})
    try:
        with opener.open(request, timeout=10) as response:
            return response.status, {k.lower(): v for k, v in response.headers.items()}, \
                response.read()
    except urllib.error.HTTPError as err:
        with err:
            return err.code, {k.lower(): v for k, v in err.headers.items()}, err.read()


def test_two_hosts_behind_nginx_share_links_and_invalidations(tmp_path: Path) -> None:
    redis = redis_url()
    _nginx()
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
                    "-subj", "/CN=127.0.0.1", "-keyout", str(key), "-out", str(cert)],
                   check=True, capture_output=True, timeout=60)
    http_port, https_port = free_port(), free_port()
    public = f"https://127.0.0.1:{https_port}"
    env = snip_env(database_url=sqlite_url(tmp_path / "shared.db"), redis_url=redis,
                   redis_prefix=f"snip-cluster-{secrets.token_hex(4)}:", base_url=public)
    with serving(tmp_path, env, log_name="host-a.log") as a, \
            serving(tmp_path, env, log_name="host-b.log") as b, \
            nginx_with(_site([a.port, b.port], http_port, https_port, cert, key), tmp_path):
        deadline = time.monotonic() + 15
        while _https("GET", f"{public}/healthz")[0] != 200:
            assert time.monotonic() < deadline, "nginx did not come up"
            time.sleep(0.1)

        status, _, body = _https("POST", f"{public}/api/v1/links",
                                 b'{"url": "https://example.com/cluster"}')
        assert status == 201
        link = json.loads(body)
        assert link["short_url"].startswith(public + "/")

        for _ in range(20):  # nginx spreads these over both hosts
            status, headers, _ = _https("GET", link["short_url"])
            assert status == 302 and headers["location"] == "https://example.com/cluster"
        for host in (a, b):
            served = metric_samples(http("GET", f"{host.base_url}/metrics").body.decode())
            assert served.get('snip_http_requests_total{method="GET",route="/{code}",'
                              'status="302"}', 0) > 0, f"{host.base_url} served no redirect"

        # An edit through host A reaches host B's cache at once, through Redis.
        assert http("GET", f"{b.base_url}/{link['code']}").headers["location"] == \
            "https://example.com/cluster"
        patched = http("PATCH", f"{a.base_url}/api/v1/links/{link['code']}",
                       {"url": "https://example.com/moved"})
        assert patched.status == 200
        deadline = time.monotonic() + 3
        while http("GET", f"{b.base_url}/{link['code']}").headers["location"] != \
                "https://example.com/moved":
            assert time.monotonic() < deadline, "host B kept serving the old destination"
            time.sleep(0.05)

        # Plain http goes to https; /metrics is not served on the public name.
        plain = http("GET", f"http://127.0.0.1:{http_port}/{link['code']}")
        assert plain.status == 301 and plain.headers["location"].startswith("https://")
        assert _https("GET", f"{public}/metrics")[0] == 404
