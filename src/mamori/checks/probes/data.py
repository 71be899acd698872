"""Open data stores: do they hand out data (or a login) to someone with no credentials?

Each primitive asks the question the owner would fear a stranger asking, and reports the
parsed answer. Every "yes" must be the protocol's own, well-formed answer (a stats table, a
database list, AuthenticationOk, an OK packet followed by server statistics), so a server that
says "+OK" or "200" to everything never looks open. A reply that is not the protocol at all
raises ``ProbeFailure`` (the check is "not tested"), because nothing was learned.
"""

from __future__ import annotations

import ssl
from collections.abc import Callable
from typing import Any

from mamori.checks.observation import Observation, ProbeContext, excerpt
from mamori.checks.params import Params
from mamori.checks.primitive import Primitive
from mamori.model import ErrorKind
from mamori.net.stream import BoundedStream, ProbeFailure, exchange, insecure_tls_context
from mamori.protocols import http, jsonbody, memcached, mongodb, mysql, postgres

_LISTED = 20  # names kept as evidence from a database/index/container list
_ListOf = Callable[[Any], str | None]


def _tls(ctx: ProbeContext) -> ssl.SSLContext | None:
    # The endpoint was identified as TLS: speak TLS to it (the certificate is another check's).
    return insecure_tls_context() if ctx.service is not None and ctx.service.tls else None


def _not_it(what: str, reply: bytes) -> ProbeFailure:
    return ProbeFailure(ErrorKind.PROTOCOL, f"reply is not {what}: {excerpt(reply, 60)!r}")


def _names(items: list[Any], name_of: _ListOf) -> str:
    names = [n for n in (name_of(i) for i in items[:_LISTED]) if n]
    return ", ".join(n[:64] for n in names)


# --- memcached --------------------------------------------------------------------------------

_MEMCACHED_FIELDS = ("version", "pid", "uptime", "curr_items", "total_items", "bytes",
                     "curr_connections")


async def memcached_stats(ctx: ProbeContext, params: Params) -> Observation:
    """Send ``stats`` without authenticating. Fields: the server's stats (version, pid,
    uptime, curr_items, ...) or ``error`` (e.g. "CLIENT_ERROR unauthenticated").
    Raises ProbeFailure when the reply is neither a stats table nor a memcached error."""
    request = b"stats\r\n"
    reply = await exchange(ctx.address, ctx.port, request, ctx.options.limits,
                           tls=_tls(ctx), done=memcached.stats_complete)
    fields: dict[str, str] = {}
    stats = memcached.parse_stats(reply)
    error = memcached.error_line(reply)
    if stats is not None:
        fields.update({k: stats[k][:64] for k in _MEMCACHED_FIELDS if k in stats})
    elif error is not None:
        fields["error"] = error
    else:
        raise _not_it("a memcached stats reply", reply)
    return Observation(test="sent the memcached command stats without authenticating",
                       fields=fields, request=excerpt(request), reply=excerpt(reply))


# --- MongoDB ----------------------------------------------------------------------------------


def _mongo_name(item: Any) -> str | None:
    name = item.get("name") if isinstance(item, dict) else None
    return name if isinstance(name, str) else None


async def mongodb_list_databases(ctx: ProbeContext, params: Params) -> Observation:
    """Run ``listDatabases`` on ``admin`` without authenticating. Fields: ``ok`` ("1"/"0"),
    ``database_count`` and ``databases`` (names) when the list came back, else ``code``,
    ``code_name`` and ``error``. Raises ProbeFailure when the reply is not MongoDB's."""
    request = mongodb.build_op_msg({"listDatabases": 1, "$db": "admin"})
    reply = await exchange(ctx.address, ctx.port, request, ctx.options.limits,
                           tls=_tls(ctx), done=mongodb.reply_complete)
    doc = mongodb.parse_reply(reply)
    if doc is None or "ok" not in doc:
        raise _not_it("a MongoDB command reply", reply)
    ok = doc["ok"]
    fields = {"ok": "1" if ok in (1, True) else "0"}
    dbs = doc.get("databases")
    if isinstance(dbs, list) and all(_mongo_name(d) for d in dbs):
        fields["database_count"] = str(len(dbs))
        fields["databases"] = _names(dbs, _mongo_name)
    for key, out in (("code", "code"), ("codeName", "code_name"), ("errmsg", "error")):
        if key in doc:
            fields[out] = str(doc[key])[:256]
    return Observation(
        test="ran the MongoDB command listDatabases on the admin database without "
             "authenticating",
        fields=fields, request=excerpt(request), reply=excerpt(reply),
    )


# --- HTTP APIs: Elasticsearch/OpenSearch, CouchDB, Docker --------------------------------------


async def _http_get(ctx: ProbeContext, path: str) -> tuple[bytes, bytes, http.HttpResponse]:
    """GET ``path``; returns (request, raw reply, parsed reply). Raises ProbeFailure when the
    connection fails or the reply is not HTTP."""
    host = http.host_header(ctx.hostname or ctx.address, ctx.port,
                            443 if _tls(ctx) is not None else 80)
    request = http.build_request("GET", path, host, ctx.options.user_agent,
                                 (("Accept", "application/json"),))
    reply = await exchange(ctx.address, ctx.port, request, ctx.options.limits,
                           tls=_tls(ctx), server_hostname=ctx.hostname, done=http.reply_complete)
    parsed = http.parse_response(reply)
    if parsed is None:
        raise _not_it("HTTP", reply)
    return request, reply, parsed


def _refusal(prefix: str, resp: http.HttpResponse) -> dict[str, str]:
    """What an HTTP refusal says: the auth challenge and the JSON error, when present."""
    fields: dict[str, str] = {}
    challenge = resp.header("WWW-Authenticate")
    if challenge:
        fields[f"{prefix}auth_required"] = challenge[:128]
    doc = jsonbody.json_object(resp.body) or {}
    error = doc.get("error", doc.get("message"))
    if isinstance(error, dict):  # Elasticsearch: {"error": {"type": ..., "reason": ...}}
        error = f"{error.get('type', '')}: {error.get('reason', '')}"
    if isinstance(error, str) and error:
        reason = doc.get("reason")
        detail = f": {reason}" if isinstance(reason, str) else ""
        fields[f"{prefix}error"] = (error + detail)[:256]
    return fields


def _evidence(*exchanges: tuple[bytes, bytes]) -> tuple[str, str]:
    """Request and reply excerpts of one or more exchanges, split by a blank line."""
    return ("\n\n".join(excerpt(r, 512) for r, _ in exchanges),
            "\n\n".join(excerpt(a, 768) for _, a in exchanges))


def _str(doc: dict[str, Any], *path: str) -> str | None:
    value: Any = doc
    for key in path:
        value = value.get(key) if isinstance(value, dict) else None
    return value[:128] if isinstance(value, str) else None


async def _list_at(ctx: ProbeContext, path: str, prefix: str, name_of: _ListOf
                   ) -> tuple[tuple[bytes, bytes], dict[str, str]]:
    """GET a JSON list; fields ``<prefix>status``, ``<prefix>count`` (``+`` when the list
    was cut by the read cap) and ``<prefix>names``, or the refusal's fields."""
    request, reply, resp = await _http_get(ctx, path)
    fields = {f"{prefix}status": str(resp.status)}
    listed = jsonbody.json_array_prefix(resp.body) if resp.status == 200 else None
    if listed is not None:
        items, complete = listed
        fields[f"{prefix}count"] = f"{len(items)}{'' if complete else '+'}"
        fields[f"{prefix}names"] = _names(items, name_of)
    else:
        fields.update(_refusal(prefix, resp))
    return (request, reply), fields


def _es_index(item: Any) -> str | None:
    return _str(item, "index") if isinstance(item, dict) else None


async def elasticsearch_cluster(ctx: ProbeContext, params: Params) -> Observation:
    """GET / and, when the cluster answers, GET /_cat/indices, without credentials.

    Fields: ``status``, ``cluster_name``, ``version_number``, ``distribution``
    ("elasticsearch"/"opensearch"), ``tagline``; ``indices_status``, ``indices_count``,
    ``indices_names``; ``grade`` ("data" when indices were listed, "info" when only the
    cluster answered); or ``auth_required``/``error`` of a refusal. Raises ProbeFailure when
    the reply is not HTTP."""
    request, reply, resp = await _http_get(ctx, "/")
    exchanges = [(request, reply)]
    fields = {"status": str(resp.status)}
    doc = jsonbody.json_object(resp.body) if resp.status == 200 else None
    number = _str(doc, "version", "number") if doc else None
    if doc and number:
        fields.update({"version_number": number,
                       "distribution": _str(doc, "version", "distribution") or "elasticsearch"})
        for key in ("cluster_name", "cluster_uuid", "name", "tagline"):
            value = _str(doc, key)
            if value:
                fields[key] = value
        listing, more = await _list_at(ctx, "/_cat/indices?format=json&h=index,docs.count",
                                       "indices_", _es_index)
        exchanges.append(listing)
        fields.update(more)
        fields["grade"] = "data" if fields.get("indices_status") == "200" and \
            "indices_count" in fields else "info"
    else:
        fields.update(_refusal("", resp))
    req, rep = _evidence(*exchanges)
    return Observation(
        test="sent GET / and GET /_cat/indices to the search cluster without credentials",
        fields=fields, request=req, reply=rep,
    )


def _plain_name(item: Any) -> str | None:
    return item if isinstance(item, str) else None


async def couchdb_all_dbs(ctx: ProbeContext, params: Params) -> Observation:
    """GET / and, when CouchDB welcomes us, GET /_all_dbs, without credentials.

    Fields: ``status``, ``couchdb`` ("Welcome"), ``version``, ``vendor``;
    ``all_dbs_status``, ``all_dbs_count``, ``all_dbs_names``; or ``auth_required``/``error``
    of a refusal. Raises ProbeFailure when the reply is not HTTP."""
    request, reply, resp = await _http_get(ctx, "/")
    exchanges = [(request, reply)]
    fields = {"status": str(resp.status)}
    doc = jsonbody.json_object(resp.body) if resp.status == 200 else None
    if doc and _str(doc, "couchdb") == "Welcome":
        fields["couchdb"] = "Welcome"
        for key, path in (("version", ("version",)), ("vendor", ("vendor", "name"))):
            value = _str(doc, *path)
            if value:
                fields[key] = value
        listing, more = await _list_at(ctx, "/_all_dbs", "all_dbs_", _plain_name)
        exchanges.append(listing)
        fields.update(more)
    else:
        fields.update(_refusal("", resp))
    req, rep = _evidence(*exchanges)
    return Observation(test="sent GET / and GET /_all_dbs to CouchDB without credentials",
                       fields=fields, request=req, reply=rep)


def _container(item: Any) -> str | None:
    if not isinstance(item, dict):
        return None
    names = item.get("Names")
    image = _str(item, "Image") or "?"
    if isinstance(names, list) and names and isinstance(names[0], str):
        return f"{names[0].lstrip('/')[:48]} ({image[:48]})"
    return image if image != "?" else None


async def docker_api(ctx: ProbeContext, params: Params) -> Observation:
    """GET /version and, when the engine answers, GET /containers/json?all=1, unauthenticated.

    Fields: ``status``, ``api_version``, ``version``, ``os``, ``arch``, ``kernel``;
    ``containers_status``, ``containers_count``, ``containers_names``; or
    ``auth_required``/``error`` of a refusal. Raises ProbeFailure when the reply is not HTTP
    (a daemon that wants a TLS client certificate fails the handshake: not tested)."""
    request, reply, resp = await _http_get(ctx, "/version")
    exchanges = [(request, reply)]
    fields = {"status": str(resp.status)}
    doc = jsonbody.json_object(resp.body) if resp.status == 200 else None
    api = _str(doc, "ApiVersion") if doc else None
    if doc and api:
        fields["api_version"] = api
        for key, name in (("version", "Version"), ("os", "Os"), ("arch", "Arch"),
                          ("kernel", "KernelVersion")):
            value = _str(doc, name)
            if value:
                fields[key] = value
        listing, more = await _list_at(ctx, "/containers/json?all=1", "containers_", _container)
        exchanges.append(listing)
        fields.update(more)
    else:
        fields.update(_refusal("", resp))
    req, rep = _evidence(*exchanges)
    return Observation(
        test="sent GET /version and GET /containers/json?all=1 to the Docker Engine API "
             "without credentials",
        fields=fields, request=req, reply=rep,
    )


# --- PostgreSQL -------------------------------------------------------------------------------


async def postgres_login(ctx: ProbeContext, params: Params) -> Observation:
    """Send a StartupMessage as ``user`` (default "postgres") for ``database`` and report how
    the server wants us to authenticate. Fields: ``auth`` ("ok" = let in without a password,
    "sasl", "md5", "cleartext", ...), ``mechanisms``, ``server_version``, ``is_superuser``,
    ``error_code``/``error``. Raises ProbeFailure when the reply is not PostgreSQL's."""
    user = params.text("user", "postgres")
    database = params.text("database", "postgres")
    request = postgres.build_startup(user, database)
    stream = await BoundedStream.open(ctx.address, ctx.port, ctx.options.limits)
    try:
        await stream.send(request)
        reply = await stream.read_until(postgres.login_settled)
        login = postgres.parse_login(reply)
        if login is not None and login.auth == "ok":
            await stream.send(postgres.build_terminate())
    finally:
        await stream.close()
    if login is None:
        raise _not_it("a PostgreSQL login reply", reply)
    fields = {"user": user, "auth": login.auth or "none"}
    if login.mechanisms:
        fields["mechanisms"] = ", ".join(login.mechanisms)
    for key in ("server_version", "is_superuser", "session_authorization"):
        if key in login.parameters:
            fields[key] = login.parameters[key][:64]
    if login.error:
        fields["error_code"] = login.error.get("C", "")[:8]
        fields["error"] = login.error.get("M", "")[:256]
    return Observation(
        test=f"sent a PostgreSQL StartupMessage as user {user!r} for database {database!r} "
             "and read how the server asked us to authenticate",
        fields=fields, request=excerpt(request), reply=excerpt(reply),
    )


# --- MySQL / MariaDB --------------------------------------------------------------------------


async def _mysql_login(stream: BoundedStream, hello: mysql.Handshake, user: str
                       ) -> tuple[mysql.AuthResult | None, bytes, bytes]:
    """Log in as ``user`` with an empty password, following up to two auth switches.
    Returns the verdict (None if garbled), what we sent and what came back."""
    sent = mysql.build_login(hello, user, b"")
    received = b""
    await stream.send(sent)
    for _ in range(3):
        stream.rearm()
        reply = await stream.read_until(mysql.packet_complete)
        received += reply
        result = mysql.parse_auth_result(reply)
        if result is None or result.kind in ("ok", "error"):
            return result, sent, received
        if result.kind == "more" and result.data == b"\x03":
            continue  # caching_sha2 "fast auth succeeded": the OK packet follows
        if result.kind != "switch":
            return result, sent, received
        # The proof of an empty password is empty for every plugin that hashes it.
        answer = mysql.packet(result.sequence + 1, b"")
        sent += answer
        await stream.send(answer)
    return None, sent, received


async def mysql_empty_password(ctx: ProbeContext, params: Params) -> Observation:
    """Log in as ``user`` (default "root") with an empty password and, if let in, ask for the
    server statistics. Fields: ``server_version``, ``auth_plugin``, ``login`` ("ok", "error",
    "switch", "more", "refused-at-greeting"), ``error_code``/``error``, ``statistics``.
    Raises ProbeFailure when the greeting is not MySQL's or the login reply is garbled."""
    user = params.text("user", "root")
    stream = await BoundedStream.open(ctx.address, ctx.port, ctx.options.limits)
    try:
        greeting = await stream.read_until(mysql.packet_complete)
        hello = mysql.parse_handshake(greeting)
        if hello is None:
            raise _not_it("a MySQL protocol-4.1 greeting", greeting)
        if isinstance(hello, mysql.ErrorPacket):
            fields = {"login": "refused-at-greeting", "error_code": str(hello.code),
                      "error": hello.message}
            return Observation(test="connected to the MySQL port and read the greeting",
                               fields=fields, reply=excerpt(greeting))
        result, sent, received = await _mysql_login(stream, hello, user)
        if result is None:
            raise ProbeFailure(ErrorKind.PROTOCOL, "garbled reply to the login packet")
        fields = {"user": user, "server_version": hello.server_version[:64],
                  "auth_plugin": hello.auth_plugin, "login": result.kind}
        reply = greeting + received
        if result.kind == "error":
            fields.update(error_code=str(result.code), error=result.message)
        if result.kind == "ok":
            stats_request = mysql.build_command(mysql.COM_STATISTICS)
            sent += stats_request
            await stream.send(stats_request)
            stream.rearm()
            answer = await stream.read_until(mysql.packet_complete)
            reply += answer
            stats = mysql.parse_statistics(answer)
            if stats is not None:
                fields["statistics"] = stats
            await stream.send(mysql.build_command(mysql.COM_QUIT))
    finally:
        await stream.close()
    return Observation(
        test=f"logged in to MySQL/MariaDB as {user!r} with an empty password and asked for "
             "the server statistics (COM_STATISTICS)",
        fields=fields, request=excerpt(sent), reply=excerpt(reply),
    )


PRIMITIVES: dict[str, Primitive] = {
    "memcached_stats": memcached_stats,
    "mongodb_list_databases": mongodb_list_databases,
    "elasticsearch_cluster": elasticsearch_cluster,
    "couchdb_all_dbs": couchdb_all_dbs,
    "docker_api": docker_api,
    "postgres_login": postgres_login,
    "mysql_empty_password": mysql_empty_password,
}
