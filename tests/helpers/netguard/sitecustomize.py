"""A network guard for test subprocesses: only loopback may be reached.

Put this folder first on ``PYTHONPATH`` and name a file in ``POCKETPACK_NETGUARD_RECORD``:
Python imports ``sitecustomize`` at start-up, before any code of the process, and this one
installs an audit hook (PEP 578) that sees every socket connect, send and name lookup made
from Python (urllib, httpx, requests, huggingface_hub, gradio's analytics...). A target that is
not loopback is appended to the record file, one line ``event<TAB>target<TAB>where``, and
refused with an OSError, so nothing leaves the machine and the test can say who tried.

Connections opened by native code that never calls Python's socket module (a C library's
own sockets) are outside an audit hook's sight; the pack opens none.
"""

import os
import sys

_RECORD = os.environ.get("POCKETPACK_NETGUARD_RECORD")


def _install(record: str) -> None:
    import ipaddress
    import socket
    import traceback

    local_names = {"", "localhost", "localhost.localdomain", "ip6-localhost", "ip6-loopback"}
    try:
        local_names.add(socket.gethostname().lower())  # the machine's own name is /etc/hosts, not a server
    except OSError:
        pass

    def is_local(host) -> bool:
        if host is None:
            return True
        if isinstance(host, bytes):
            host = host.decode("ascii", "replace")
        if isinstance(host, int):
            return False
        host = str(host).strip("[]").split("%")[0].lower()
        if host in local_names:
            return True
        try:
            address = ipaddress.ip_address(host)
        except ValueError:
            return False
        return address.is_loopback or address.is_unspecified

    def target_of(event: str, args: tuple):
        """The host an event would reach, or None when the event reaches nothing remote."""
        if event in ("socket.connect", "socket.sendto", "socket.sendmsg"):
            sock, address = args[0], args[1]
            if getattr(sock, "family", None) not in (socket.AF_INET, socket.AF_INET6):
                return None  # a Unix socket (a local file) or a socketpair
            return address[0] if isinstance(address, tuple) and address else address
        if event in ("socket.getaddrinfo", "socket.gethostbyname", "socket.gethostbyaddr"):
            return args[0]
        if event == "socket.getnameinfo":
            sockaddr = args[0]
            return sockaddr[0] if isinstance(sockaddr, tuple) and sockaddr else sockaddr
        return None

    busy = False

    def hook(event: str, args: tuple) -> None:
        nonlocal busy
        if not event.startswith("socket.") or busy:
            return
        host = target_of(event, args)
        if host is None or is_local(host):
            return
        busy = True  # formatting the stack must not re-enter the hook
        try:
            frames = [f for f in traceback.extract_stack()[:-1] if "netguard" not in f.filename]
            ours = [f for f in frames if any(part in f.filename for part in ("/pocketpack/", "/extensions/"))]
            where = " -> ".join(f"{f.filename.rsplit('/', 2)[-2]}/{os.path.basename(f.filename)}:{f.lineno}"
                                for f in (ours[-1:] + frames[-1:]))
            with open(record, "a", encoding="utf-8") as out:
                out.write(f"{event}\t{host}\t{where}\n")
        finally:
            busy = False
        raise OSError(f"netguard: {event} to {host!r} refused (only loopback is allowed in this test)")

    sys.addaudithook(hook)


if _RECORD:
    _install(_RECORD)
