"""Check primitives for services that hand something out to whoever connects: an X display
without access control, git daemon repositories, TFTP files, rsync modules open to uploads.

Each sends what a stranger's client would send first, without credentials, and stops as soon
as the answer proves (or disproves) access: no window is opened, no screen read, no object
fetched, at most one TFTP block read.
"""

from __future__ import annotations

import secrets

from mamori.checks.observation import Observation, ProbeContext, excerpt
from mamori.checks.params import Params
from mamori.checks.primitive import Primitive
from mamori.checks.probes import rsync_push
from mamori.checks.probes.remote import rsync_open
from mamori.model import ErrorKind
from mamori.net.datagram_tid import ask_any_port
from mamori.net.stream import ProbeFailure, exchange
from mamori.protocols import git, rsync, tftp, x11

# git daemon cannot list its repositories: these are the paths tried when the check file
# gives none. "/" is the base path itself (a daemon run inside one repository); the rest are
# names people give a lone shared repository. A passed result says which were tried.
GIT_PATHS = ["/", "/.git", "/repo.git", "/repo", "/git", "/project.git"]
# Files that TFTP servers commonly hand out: network boot loaders and menus, IP phone and
# router configurations. Names from vendor boot/provisioning documentation, not secrets.
TFTP_FILES = ["pxelinux.0", "pxelinux.cfg/default", "bootx64.efi", "grubx64.efi",
              "undionly.kpxe", "SEPDefault.cnf", "XMLDefault.cnf.xml", "running-config",
              "startup-config", "config.txt", "network-confg", "router-confg"]


async def x11_access(ctx: ProbeContext, params: Params) -> Observation:
    """Send the X11 connection setup request with no authorization and read the answer.

    Fields: setup (success/failed/authenticate), reason, vendor, release, screens.
    Raises ProbeFailure when the peer does not answer like an X server.
    """
    request = x11.build_setup()
    reply = await exchange(ctx.address, ctx.port, request, ctx.options.limits,
                           done=lambda b: x11.parse_setup_reply(b) is not None or (
                               len(b) >= 4 and not x11.looks_like_x11(b)))
    parsed = x11.parse_setup_reply(reply)
    if parsed is None:
        raise ProbeFailure(ErrorKind.GARBAGE,
                           f"no X11 setup answer: {excerpt(reply[:40], 40) or '(closed)'}")
    fields = {"setup": parsed.status, "protocol": f"{parsed.major}.{parsed.minor}"}
    if parsed.status == "success":
        fields.update(vendor=parsed.vendor or "(none)", release=str(parsed.release),
                      screens=str(parsed.screens))
    elif parsed.reason:
        fields["reason"] = parsed.reason
    answer = (f"{parsed.status}; vendor {parsed.vendor!r}, release {parsed.release}, "
              f"{parsed.screens} screen(s) (connection closed, nothing else sent)"
              if parsed.status == "success" else f"{parsed.status}: {parsed.reason!r}")
    return Observation(
        test="sent the X11 connection setup request (protocol 11.0) with no authorization "
             "name or data",
        fields=fields,
        request=excerpt(request),
        reply=answer,
    )


async def _git_ask(ctx: ProbeContext, path: str) -> git.Advertisement:
    request = git.build_upload_pack_request(path, ctx.hostname or ctx.address)
    try:
        reply = await exchange(ctx.address, ctx.port, request, ctx.options.limits,
                               done=git.advertisement_complete)
    except ProbeFailure as exc:
        if exc.stage == "connect" or not exc.partial:
            raise
        reply = exc.partial  # a long advertisement cut at the byte cap
    if not reply:
        # git daemon closes without a word when it refuses a service it has disabled.
        return git.Advertisement((), (), "connection closed without an answer", True, 0)
    parsed = git.parse_advertisement(reply)
    if parsed is None:
        raise ProbeFailure(ErrorKind.GARBAGE, f"not a git pkt-line answer: {excerpt(reply, 60)}")
    return parsed


async def git_exports(ctx: ProbeContext, params: Params) -> Observation:
    """Ask git daemon for the upload-pack advertisement of each path in ``paths`` (the check
    file's list, else GIT_PATHS); stop at the first that answers with refs.

    Fields: tried, exported (the path), refs (a few ref names), ref_count, refused (the
    daemon's ERR text for the last refusal), grade ("refs", or "any-path" when a random path
    is advertised too). Raises ProbeFailure when the peer does not speak
    the git daemon protocol.
    """
    paths = params.texts("paths", GIT_PATHS)[:12]
    fields: dict[str, str] = {}
    log: list[str] = []
    for path in paths:
        adv = await _git_ask(ctx, path)
        if adv.error is not None:
            log.append(f"{path}: ERR {adv.error}")
            fields["refused"] = adv.error
            continue
        names = [name for _oid, name in adv.refs]
        log.append(f"{path}: {adv.ref_count} ref(s) advertised: " + ", ".join(names[:6]))
        fields.update(exported=path, ref_count=str(adv.ref_count),
                      refs=", ".join(names[:6])[:300] or "(empty repository)", grade="refs")
        # A real daemon refuses a path that cannot exist; one that advertises refs for it
        # says yes to anything, which proves nothing about real repositories.
        bogus = f"/mamori-{secrets.token_hex(6)}.git"
        if (await _git_ask(ctx, bogus)).error is None:
            log.append(f"{bogus} (random path): refs advertised too")
            fields["grade"] = "any-path"
        break
    fields["tried"] = ", ".join(paths[:len(log)])
    return Observation(
        test="asked git daemon for the reference list (git-upload-pack, protocol v0) of "
             f"{', '.join(paths[:len(log)])}; git daemon cannot list its repositories, so "
             "only these paths were tried; no objects fetched",
        fields=fields,
        request=excerpt(b"".join(git.build_upload_pack_request(p, ctx.hostname or ctx.address)
                                 for p in paths[:len(log)])),
        reply=excerpt("\n".join(log)),
    )


async def tftp_files(ctx: ProbeContext, params: Params) -> Observation:
    """Send a read request for a random name (a TFTP server answers with an ERROR packet from
    a port of its own), then for each well-known name (``files``, else TFTP_FILES); the first
    DATA block ends the search, and an ERROR back ends that transfer.

    Fields: tftp ("yes" once a TFTP packet came back), served (file name), first_bytes (size
    of the first block), errors. Raises ProbeFailure when sending fails.
    """
    timeout = min(ctx.options.limits.idle_timeout, 2.0)
    stop = tftp.build_error(0, "mamori: one block is enough")
    probe_name = f"mamori-{secrets.token_hex(6)}"
    first = await ask_any_port(ctx.address, ctx.port, tftp.build_read_request(probe_name),
                               timeout=timeout, tries=2, farewell=stop)
    packet = tftp.parse_packet(first.data) if first.data is not None else None
    log = [f"RRQ {probe_name} (random name): " + (
        "no answer" if first.data is None else
        packet.error_text if packet is not None and packet.opcode == tftp.OP_ERROR else
        f"unexpected answer {excerpt(first.data[:40], 40)}")]
    fields: dict[str, str] = {}
    test = f"sent a TFTP read request (octet mode) for the random name {probe_name}"
    if packet is not None and packet.opcode == tftp.OP_DATA:
        # Data for a name that cannot exist: it hands out something to anyone, but says
        # yes to every name, so its answers to real names prove nothing more.
        log[0] = (f"RRQ {probe_name} (random name): DATA block {packet.number}, "
                  f"{len(packet.payload)} bytes (ERROR sent back)")
        fields.update(tftp="yes", served=probe_name, first_bytes=str(len(packet.payload)),
                      grade="any-name")
        return Observation(test=test, fields=fields, request=f"RRQ {probe_name} octet",
                           reply=log[0])
    if packet is None or packet.opcode != tftp.OP_ERROR:
        return Observation(test=test + "; no TFTP error came back, so no file names were "
                           "tried", fields=fields, request=f"RRQ {probe_name} octet",
                           reply=log[0])
    fields["tftp"] = "yes"
    names = params.texts("files", TFTP_FILES)[:16]
    tried: list[str] = []
    for name in names:
        tried.append(name)
        got = await ask_any_port(ctx.address, ctx.port, tftp.build_read_request(name),
                                 timeout=timeout, tries=1, farewell=stop)
        answer = tftp.parse_packet(got.data) if got.data is not None else None
        if answer is None:
            log.append(f"RRQ {name}: no TFTP answer")
        elif answer.opcode == tftp.OP_ERROR:
            log.append(f"RRQ {name}: ERROR {answer.error_text}")
        else:
            log.append(f"RRQ {name}: DATA block {answer.number}, {len(answer.payload)} bytes "
                       "(not acknowledged; ERROR sent back to end the transfer)")
            fields.update(served=name, first_bytes=str(len(answer.payload)), grade="served")
            break
    return Observation(
        test=test + ", then for these well-known names: " + ", ".join(tried)
        + "; read one block at most",
        fields=fields,
        request=excerpt("\n".join([f"RRQ {probe_name} octet"]
                                  + [f"RRQ {n} octet" for n in tried])),
        reply=excerpt("\n".join(log)),
    )


async def rsync_module_write(ctx: ProbeContext, params: Params) -> Observation:
    """List the modules ("#list"), then for each (up to ``max_modules``) try, without
    credentials, to upload one uniquely named tiny file into its top directory (protocol 29,
    the daemon as receiver); when it went out, list the module to see it, delete exactly that
    name and list again (see rsync_push).

    Fields: modules, writable_module, uploaded, listed, cleanup, refused (module: the
    daemon's words), auth_required, not_written, grade ("written" when the listing showed the
    file, "accepted" when the daemon took it but the listing did not show it).
    Raises ProbeFailure when the peer is no rsync daemon.
    """
    limit = int(params.number("max_modules", 4))
    stream, greeting = await rsync_open(ctx, rsync.build_module_request("#list"))
    try:
        listing = await stream.read_until(rsync.module_list_complete)
    finally:
        await stream.close()
    modules = [m.name for m in rsync.parse_module_list(listing) or []][:limit]
    fields: dict[str, str] = {"modules": ", ".join(modules)[:300] or "(none listed)"}
    log: list[str] = []
    refused: list[str] = []
    auth: list[str] = []
    other: list[str] = []
    failure: ProbeFailure | None = None
    for module in modules:
        proof = await rsync_push.prove_upload(ctx, module)
        up = proof.upload
        words = "; ".join(filter(None, [up.detail, *up.messages[:2]]))
        if up.status == "auth-required":
            auth.append(module)
            log.append(f"{module}: password required")
        elif up.status == "refused":
            refused.append(f"{module}: {next(m for m in up.messages if 'read only' in m)}")
            log.append(f"{module}: upload refused: {'; '.join(up.messages[:2])}")
        elif not up.sent:
            other.append(f"{module}: {words or up.status}")
            log.append(f"{module}: no file requested ({words or up.status})")
            failure = failure or ProbeFailure(up.kind, f"rsync module {module}: {words}")
        else:
            uploaded = f"{module}/{proof.name} ({proof.size} bytes)"
            fields.update(writable_module=module, uploaded=uploaded, listed=proof.seen,
                          cleanup=proof.cleanup,
                          grade="written" if proof.seen.startswith("seen,") else "accepted")
            log.append(f"{module}: uploaded {uploaded} without a password"
                       + (f" ({words})" if words else "") + f", listed it: {proof.seen}; "
                       + proof.cleanup)
            break
    if failure is not None and "writable_module" not in fields:
        raise failure  # a module we could not judge: "not tested" with its reason, never passed
    if refused:
        fields["refused"] = ", ".join(refused)[:300]
    if auth:
        fields["auth_required"] = ", ".join(auth)[:300]
    if other:
        fields["not_written"] = ", ".join(other)[:300]
    tried = modules[:len(log)]
    return Observation(
        test='asked the rsync daemon for "#list", then for each module, without credentials, '
             "uploaded one uniquely named file (protocol 29, the daemon as receiver); when it "
             "went out: listed the module, deleted exactly that name "
             "(--delete-missing-args) and listed again: " + (", ".join(tried) or
                                                             "no module listed"),
        fields=fields,
        request=excerpt(rsync.build_hello() + b"#list\n" + b"".join(
            rsync.build_module_request(m) + rsync.build_receiver_args(m) for m in tried) + (
            rsync.build_module_request(tried[-1]) + rsync.build_receiver_args(
                tried[-1], delete_missing=True) if "writable_module" in fields else b"")),
        reply=excerpt(greeting.decode("utf-8", "replace") + "\n".join(log)),
    )


PRIMITIVES: dict[str, Primitive] = {
    "rsync_module_write": rsync_module_write,
    "x11_access": x11_access,
    "git_exports": git_exports,
    "tftp_files": tftp_files,
}
