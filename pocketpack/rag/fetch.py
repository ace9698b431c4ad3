"""Fetch a web page or file by URL, with a timeout and a size limit, for ingestion.

Only http and https. Addresses on this machine or the local network are refused unless
``allow_private`` is set (the CLI, run by the machine's owner, sets it; the web UI does not by
default, so a shared UI cannot be used to read internal services). Every failure raises
``FetchError`` with one line: "answered 404 Not Found", "no answer within 15 s", ...
"""

from __future__ import annotations

import ipaddress
import socket
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass

from pocketpack.errors import PocketPackError

USER_AGENT = "pocketpack-rag/0.1 (+local document indexer)"


class FetchError(PocketPackError, RuntimeError):
    """A URL that could not be fetched; the message is one line meant for the user."""


@dataclass
class Fetched:
    url: str            # after redirects
    data: bytes
    content_type: str


def is_url(text: str) -> bool:
    return urllib.parse.urlsplit(text.strip()).scheme.lower() in ("http", "https")


def _check_host(url: str, allow_private: bool) -> None:
    host = urllib.parse.urlsplit(url).hostname
    if not host:
        raise FetchError("not a valid URL (no host)")
    if allow_private:
        return
    try:
        infos = socket.getaddrinfo(host, None)
    except socket.gaierror as exc:
        raise FetchError(f"cannot resolve the host name {host!r}") from exc
    for info in infos:
        addr = ipaddress.ip_address(info[4][0].split("%")[0])
        if addr.is_private or addr.is_loopback or addr.is_link_local or addr.is_reserved or addr.is_multicast:
            raise FetchError(f"refusing to fetch a local or private address ({addr});"
                             " tick 'Allow local/LAN URLs' in the Documents tab's settings to allow it")


class _CheckedRedirects(urllib.request.HTTPRedirectHandler):
    """Re-check every redirect target, so a public URL cannot bounce to a private one."""

    def __init__(self, allow_private: bool):
        self.allow_private = allow_private

    def redirect_request(self, req, fp, code, msg, headers, newurl):
        if not is_url(newurl):
            raise FetchError("redirected to a non-web address")
        _check_host(newurl, self.allow_private)
        return super().redirect_request(req, fp, code, msg, headers, newurl)


def fetch(url: str, *, timeout: float = 15.0, max_bytes: int = 50 * 1024 * 1024, allow_private: bool = False) -> Fetched:
    """GET ``url``; the body is read up to ``max_bytes`` (more is an error, not a truncation)."""
    url = url.strip()
    if not is_url(url):
        raise FetchError("only http:// and https:// URLs can be fetched")
    _check_host(url, allow_private)
    opener = urllib.request.build_opener(_CheckedRedirects(allow_private))
    request = urllib.request.Request(url, headers={"User-Agent": USER_AGENT, "Accept": "*/*"})
    try:
        with opener.open(request, timeout=timeout) as response:
            length = response.headers.get("Content-Length")
            if length and length.isdigit() and int(length) > max_bytes:
                raise FetchError(f"the document is {_mb(int(length))}, over the {_mb(max_bytes)} limit")
            data = response.read(max_bytes + 1)
            if len(data) > max_bytes:
                raise FetchError(f"the document is over the {_mb(max_bytes)} limit")
            return Fetched(response.geturl(), data, response.headers.get("Content-Type", ""))
    except FetchError:
        raise
    except urllib.error.HTTPError as exc:
        raise FetchError(f"the server answered {exc.code} {exc.reason}") from exc
    except urllib.error.URLError as exc:
        if isinstance(exc.reason, (socket.timeout, TimeoutError)):
            raise FetchError(f"no answer within {timeout:g} s") from exc
        raise FetchError(f"cannot connect ({exc.reason})") from exc
    except (socket.timeout, TimeoutError) as exc:
        raise FetchError(f"no answer within {timeout:g} s") from exc
    except OSError as exc:
        raise FetchError(f"the download failed ({exc})") from exc


def _mb(n: int) -> str:
    return f"{n / 1024 / 1024:.1f} MB"
