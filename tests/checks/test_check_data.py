"""Open-data-store checks, each against a misconfigured and a hardened server.

memcached, PostgreSQL and MariaDB are the real Debian daemons (tests/fixtures_data.py);
MongoDB, Elasticsearch/OpenSearch, CouchDB and the Docker API are small servers that answer
with the real products' reply bytes. The parsers behind them get hypothesis tests at the end.
"""

from __future__ import annotations

import asyncio
import struct
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import daemons as dm
import fixtures_data as fd
from checks_helpers import assert_finding, assert_passed
from mamori.checks.catalog import CATALOG_DIR, load_check
from mamori.checks.engine import run_checks
from mamori.model import (
    CheckResult,
    CheckStatus,
    Confidence,
    Endpoint,
    PortState,
    Proto,
    Reason,
    Service,
    Severity,
)
from mamori.protocols import jsonbody, memcached, mysql, postgres

NET = "127.0.62."


def run(check_id: str, host: str, port: int, service: str) -> CheckResult:
    """Run one of this family's checks (loaded from its own file, so a broken file of another
    family cannot fail these tests) against a live endpoint."""
    spec = load_check(CATALOG_DIR / f"{check_id}.yaml")
    ep = Endpoint(host, port, Proto.TCP, PortState.OPEN, Reason.SYN_ACK)
    results = asyncio.run(run_checks([spec], ep, Service(name=service)))
    assert len(results) == 1, results
    return results[0]


def facts(result: CheckResult) -> dict[str, str]:
    assert result.evidence is not None
    return dict(result.evidence.facts)


def started(start: Callable[[], dm.Daemon]) -> Iterator[dm.Daemon]:
    yield from dm.daemon_fixture(start)


def no_wildcard(daemon: dm.Daemon) -> None:
    pids = [daemon.proc.pid]
    if daemon.pidfile is not None and daemon.pidfile.exists():
        pids.append(int(daemon.pidfile.read_text().split()[0]))
    assert dm.listeners_on_wildcard(pids) == []


# --- memcached (real) -----------------------------------------------------------------------------

MC_OPEN, MC_AUTH, MC_PORT = NET + "1", NET + "2", 21211


@pytest.fixture(scope="module")
def memcached_open() -> Iterator[dm.Daemon]:
    yield from started(lambda: fd.start_memcached(MC_OPEN, MC_PORT, auth=False))


@pytest.fixture(scope="module")
def memcached_auth() -> Iterator[dm.Daemon]:
    yield from started(lambda: fd.start_memcached(MC_AUTH, MC_PORT, auth=True))


@pytest.mark.daemon
def test_open_memcached_is_a_confirmed_finding(memcached_open: dm.Daemon) -> None:
    no_wildcard(memcached_open)
    result = run("memcached-unauthenticated", MC_OPEN, MC_PORT, "memcached")
    assert_finding(result)
    assert result.confidence is Confidence.CONFIRMED
    got = facts(result)
    assert got["version"].startswith("1.6")
    assert int(got["pid"]) > 1 and got["uptime"].isdigit()
    assert result.evidence is not None and result.evidence.request == "stats\r\n"
    assert "STAT version" in (result.evidence.reply or "")


@pytest.mark.daemon
def test_memcached_with_an_auth_file_passes(memcached_auth: dm.Daemon) -> None:
    no_wildcard(memcached_auth)
    result = run("memcached-unauthenticated", MC_AUTH, MC_PORT, "memcached")
    assert_passed(result)
    assert result.evidence is not None
    assert "CLIENT_ERROR unauthenticated" in (result.evidence.reply or "")


def test_nothing_listening_is_not_tested() -> None:
    result = run("memcached-unauthenticated", NET + "99", MC_PORT, "memcached")
    assert result.status is CheckStatus.NOT_TESTED and "refused" in result.summary


# --- PostgreSQL (real) ----------------------------------------------------------------------------

PG_TRUST, PG_SCRAM, PG_PORT = NET + "3", NET + "4", 25432


@pytest.fixture(scope="module")
def pg_trust() -> Iterator[dm.Daemon]:
    yield from started(lambda: fd.start_postgres(PG_TRUST, PG_PORT, trust=True))


@pytest.fixture(scope="module")
def pg_scram() -> Iterator[dm.Daemon]:
    yield from started(lambda: fd.start_postgres(PG_SCRAM, PG_PORT, trust=False))


@pytest.mark.daemon
def test_postgres_trust_is_a_confirmed_finding(pg_trust: dm.Daemon) -> None:
    no_wildcard(pg_trust)
    result = run("postgresql-trust-auth", PG_TRUST, PG_PORT, "postgresql")
    assert_finding(result)
    assert result.severity is Severity.CRITICAL
    got = facts(result)
    assert got["user"] == "postgres" and got["is_superuser"] == "on"
    assert got["server_version"][:2].isdigit()
    assert "user\\x00postgres" in (result.evidence.request or "")  # type: ignore[union-attr]


@pytest.mark.daemon
def test_postgres_with_scram_passes(pg_scram: dm.Daemon) -> None:
    no_wildcard(pg_scram)
    result = run("postgresql-trust-auth", PG_SCRAM, PG_PORT, "postgresql")
    assert_passed(result)
    assert "SCRAM-SHA-256" in (result.evidence.reply or "")  # type: ignore[union-attr]


# --- MariaDB (real) -------------------------------------------------------------------------------

DB_EMPTY, DB_PASSWORD, DB_PORT = NET + "5", NET + "6", 23306


@pytest.fixture(scope="module")
def mariadb_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return dm.start_or_skip(fd.mariadb_datadir, tmp_path_factory.mktemp("mariadb"))


@pytest.fixture(scope="module")
def mariadb_empty(mariadb_template: Path) -> Iterator[dm.Daemon]:
    work = mariadb_template.parent / "empty"
    yield from started(lambda: fd.start_mariadb(mariadb_template, work, DB_EMPTY, DB_PORT,
                                                root_password=""))


@pytest.fixture(scope="module")
def mariadb_password(mariadb_template: Path) -> Iterator[dm.Daemon]:
    work = mariadb_template.parent / "password"
    yield from started(lambda: fd.start_mariadb(mariadb_template, work, DB_PASSWORD, DB_PORT,
                                                root_password=fd.MARIADB_PASSWORD))


@pytest.mark.daemon
def test_mariadb_empty_root_password_is_a_confirmed_finding(mariadb_empty: dm.Daemon) -> None:
    no_wildcard(mariadb_empty)
    result = run("mysql-empty-root-password", DB_EMPTY, DB_PORT, "mysql")
    assert_finding(result)
    got = facts(result)
    assert "MariaDB" in got["server_version"] and got["user"] == "root"
    assert got["statistics"].startswith("Uptime: ")
    assert "root" in (result.evidence.request or "")  # type: ignore[union-attr]


@pytest.mark.daemon
def test_mariadb_root_with_a_password_passes(mariadb_password: dm.Daemon) -> None:
    no_wildcard(mariadb_password)
    result = run("mysql-empty-root-password", DB_PASSWORD, DB_PORT, "mysql")
    assert_passed(result)
    assert "Access denied" in (result.evidence.reply or "")  # type: ignore[union-attr]


# --- MongoDB (faithful server) --------------------------------------------------------------------

MONGO, MONGO_PORT = NET + "10", 27017


def test_open_mongodb_is_a_confirmed_finding() -> None:
    with fd.fake(MONGO, MONGO_PORT,
                 lambda seen: fd.mongo_handler(fd.MONGO_DATABASES, seen)) as seen:
        result = run("mongodb-unauthenticated", MONGO, MONGO_PORT, "mongodb")
    assert_finding(result)
    got = facts(result)
    assert got["database_count"] == "4"
    assert got["databases"] == "admin, config, customers, local"
    assert b"listDatabases" in seen[0]


def test_mongodb_with_authorization_passes() -> None:
    with fd.fake(MONGO, MONGO_PORT + 1,
                 lambda seen: fd.mongo_handler(fd.MONGO_UNAUTHORIZED, seen)):
        result = run("mongodb-unauthenticated", MONGO, MONGO_PORT + 1, "mongodb")
    assert_passed(result)
    assert "requires authentication" in (result.evidence.reply or "")  # type: ignore[union-attr]


def test_http_answering_the_mongodb_port_is_not_tested() -> None:
    with fd.fake(MONGO, MONGO_PORT + 2, lambda seen: fd.http_handler({}, seen)):
        result = run("mongodb-unauthenticated", MONGO, MONGO_PORT + 2, "mongodb")
    assert result.status is CheckStatus.NOT_TESTED, result.summary


# --- Elasticsearch / OpenSearch (faithful servers) ------------------------------------------------

ES, ES_PORT = NET + "12", 9200
ES_HEADERS = (("X-elastic-product", "Elasticsearch"),
              ("content-type", "application/json"))
ES_ROOT = fd.json_body({
    "name": "node-1", "cluster_name": "elasticsearch", "cluster_uuid": "m2mbH8XyT6WOMQ6i0I1TRw",
    "version": {"number": "8.11.3", "build_flavor": "default", "build_type": "deb",
                "build_hash": "64cf052f3b56b1fd4449f5454cb88aca7e739d9a",
                "build_date": "2023-12-08T11:33:53.634979452Z", "build_snapshot": False,
                "lucene_version": "9.8.0", "minimum_wire_compatibility_version": "7.17.0",
                "minimum_index_compatibility_version": "7.0.0"},
    "tagline": "You Know, for Search",
}, pretty=True)
ES_INDICES = "/_cat/indices?format=json&h=index,docs.count"
ES_401 = ("401 Unauthorized",
          (("WWW-Authenticate", 'Basic realm="security" charset="UTF-8"'),
           ("WWW-Authenticate", "ApiKey"), *ES_HEADERS),
          fd.json_body({"error": {"root_cause": [{
              "type": "security_exception",
              "reason": "missing authentication credentials for REST request [/]"}],
              "type": "security_exception",
              "reason": "missing authentication credentials for REST request [/]"},
              "status": 401}))
OS_ROOT = fd.json_body({
    "name": "opensearch-node1", "cluster_name": "opensearch-cluster",
    "cluster_uuid": "Tw3aCkJXQjK1eTGWdHr3xg",
    "version": {"distribution": "opensearch", "number": "2.11.1", "build_type": "tar",
                "build_hash": "6b1986e964d440be9137eba1413015c31c5a7752",
                "build_date": "2023-11-29T21:43:10.135035992Z", "build_snapshot": False,
                "lucene_version": "9.7.0", "minimum_wire_compatibility_version": "7.10.0",
                "minimum_index_compatibility_version": "7.0.0"},
    "tagline": "The OpenSearch Project: https://opensearch.org/",
}, pretty=True)


def test_open_elasticsearch_listing_indices_is_a_confirmed_finding() -> None:
    routes = {"/": ("200 OK", ES_HEADERS, ES_ROOT),
              ES_INDICES: ("200 OK", ES_HEADERS, fd.json_body(
                  [{"index": "customers", "docs.count": "1200"},
                   {"index": ".kibana_1", "docs.count": "3"}]))}
    with fd.fake(ES, ES_PORT, lambda seen: fd.http_handler(routes, seen)) as seen:
        result = run("elasticsearch-unauthenticated", ES, ES_PORT, "elasticsearch")
    assert_finding(result)
    assert result.severity is Severity.HIGH and result.confidence is Confidence.CONFIRMED
    got = facts(result)
    assert got["version_number"] == "8.11.3" and got["distribution"] == "elasticsearch"
    assert got["indices_count"] == "2" and got["indices_names"] == "customers, .kibana_1"
    assert len(seen) == 2 and "listed 2 indices" in result.summary


def test_elasticsearch_answering_but_refusing_the_index_list_is_graded_info() -> None:
    forbidden = ("403 Forbidden", ES_HEADERS, fd.json_body({"error": {
        "type": "security_exception",
        "reason": "action [indices:monitor/settings/get] is unauthorized for user [_anonymous]"},
        "status": 403}))
    routes = {"/": ("200 OK", ES_HEADERS, ES_ROOT), ES_INDICES: forbidden}
    with fd.fake(ES, ES_PORT + 1, lambda seen: fd.http_handler(routes, seen)):
        result = run("elasticsearch-unauthenticated", ES, ES_PORT + 1, "elasticsearch")
    assert_finding(result)
    assert result.severity is Severity.MEDIUM and "refused (403)" in result.summary


def test_elasticsearch_with_security_passes() -> None:
    routes = {"/": ES_401, ES_INDICES: ES_401}
    with fd.fake(ES, ES_PORT + 2, lambda seen: fd.http_handler(routes, seen)) as seen:
        result = run("elasticsearch-unauthenticated", ES, ES_PORT + 2, "elasticsearch")
    assert_passed(result)
    assert len(seen) == 1  # refused at "/": no second request
    assert "security_exception" in (result.evidence.reply or "")  # type: ignore[union-attr]


def test_open_opensearch_on_a_plain_http_port_is_a_confirmed_finding() -> None:
    headers = (("content-type", "application/json; charset=UTF-8"),)
    routes = {"/": ("200 OK", headers, OS_ROOT),
              ES_INDICES: ("200 OK", headers, fd.json_body([{"index": "logs-2024.01",
                                                             "docs.count": "88"}]))}
    with fd.fake(ES, ES_PORT + 3, lambda seen: fd.http_handler(routes, seen)):
        result = run("elasticsearch-unauthenticated", ES, ES_PORT + 3, "http")
    assert_finding(result)
    assert facts(result)["distribution"] == "opensearch"
    assert facts(result)["indices_names"] == "logs-2024.01"


def test_opensearch_with_the_security_plugin_passes() -> None:
    refused = ("401 Unauthorized", (("WWW-Authenticate", 'Basic realm="OpenSearch Security"'),
                                    ("content-type", "text/plain; charset=UTF-8")),
               b"Unauthorized")
    with fd.fake(ES, ES_PORT + 4, lambda seen: fd.http_handler({"/": refused}, seen)):
        result = run("elasticsearch-unauthenticated", ES, ES_PORT + 4, "http")
    assert_passed(result)


# --- CouchDB (faithful server) --------------------------------------------------------------------

COUCH, COUCH_PORT = NET + "15", 5984
COUCH_HEADERS = (("Cache-Control", "must-revalidate"),
                 ("Content-Type", "application/json"),
                 ("Server", "CouchDB/3.3.3 (Erlang OTP/24)"),
                 ("X-Couch-Request-ID", "9d2b5c5ba4"),
                 ("X-CouchDB-Body-Time", "0"))
COUCH_ROOT = fd.json_body({
    "couchdb": "Welcome", "version": "3.3.3", "git_sha": "40afbcfc7",
    "uuid": "a9a4b3b7c0f8e6e1d2c3b4a5f6e7d8c9",
    "features": ["access-ready", "partitioned", "pluggable-storage-engines", "reshard",
                 "scheduler"],
    "vendor": {"name": "The Apache Software Foundation"},
})


def test_couchdb_listing_databases_is_a_confirmed_finding() -> None:
    routes = {"/": ("200 OK", COUCH_HEADERS, COUCH_ROOT),
              "/_all_dbs": ("200 OK", COUCH_HEADERS,
                            fd.json_body(["_replicator", "_users", "inventory"]))}
    with fd.fake(COUCH, COUCH_PORT, lambda seen: fd.http_handler(routes, seen)):
        result = run("couchdb-unauthenticated", COUCH, COUCH_PORT, "http")
    assert_finding(result)
    got = facts(result)
    assert got["version"] == "3.3.3" and got["all_dbs_count"] == "3"
    assert got["all_dbs_names"] == "_replicator, _users, inventory"


def test_couchdb_with_admin_only_all_dbs_passes() -> None:
    refused = ("401 Unauthorized", COUCH_HEADERS,
               fd.json_body({"error": "unauthorized", "reason": "You are not a server admin."}))
    routes = {"/": ("200 OK", COUCH_HEADERS, COUCH_ROOT), "/_all_dbs": refused}
    with fd.fake(COUCH, COUCH_PORT + 1, lambda seen: fd.http_handler(routes, seen)):
        result = run("couchdb-unauthenticated", COUCH, COUCH_PORT + 1, "http")
    assert_passed(result)
    assert "not a server admin" in (result.evidence.reply or "")  # type: ignore[union-attr]


def test_a_json_list_from_a_server_that_is_not_couchdb_passes() -> None:
    # Any web app may serve a JSON array at /_all_dbs; without CouchDB's welcome it is not one.
    routes = {"/": ("200 OK", (("Content-Type", "application/json"),),
                    fd.json_body({"status": "ok", "version": "3.3.3"})),
              "/_all_dbs": ("200 OK", (("Content-Type", "application/json"),),
                            fd.json_body(["a", "b"]))}
    with fd.fake(COUCH, COUCH_PORT + 2, lambda seen: fd.http_handler(routes, seen)) as seen:
        result = run("couchdb-unauthenticated", COUCH, COUCH_PORT + 2, "http")
    assert_passed(result)
    assert len(seen) == 1


# --- Docker Engine API (faithful server) ----------------------------------------------------------

DOCKER, DOCKER_PORT = NET + "17", 2375
DOCKER_HEADERS = (("Api-Version", "1.43"), ("Content-Type", "application/json"),
                  ("Docker-Experimental", "false"), ("Ostype", "linux"),
                  ("Server", "Docker/24.0.7 (linux)"))
DOCKER_VERSION = fd.json_body({
    "Platform": {"Name": "Docker Engine - Community"},
    "Version": "24.0.7", "ApiVersion": "1.43", "MinAPIVersion": "1.12",
    "GitCommit": "311b9ff", "GoVersion": "go1.20.10", "Os": "linux", "Arch": "amd64",
    "KernelVersion": "6.1.0-18-amd64", "BuildTime": "2023-10-26T09:07:41.000000000+00:00",
})
DOCKER_CONTAINERS = fd.json_body([{
    "Id": "8dfafdbc3a40a2e6bd8b1d0d7cf2f5e3b4a1c0d9e8f7a6b5c4d3e2f1a0b9c8d7",
    "Names": ["/boring_feynman"], "Image": "ubuntu:latest",
    "ImageID": "sha256:d74508fb6632491cea586a1fd7d748dfc5274cd6fdfedee309ecdcbc2bf5cb82",
    "Command": "echo 1", "Created": 1367854155, "State": "exited", "Status": "Exit 0",
    "Ports": [], "Labels": {}, "SizeRw": 12288, "SizeRootFs": 0,
    "HostConfig": {"NetworkMode": "default"}, "Mounts": [],
}])


def test_open_docker_api_is_a_confirmed_finding() -> None:
    routes = {"/version": ("200 OK", DOCKER_HEADERS, DOCKER_VERSION),
              "/containers/json?all=1": ("200 OK", DOCKER_HEADERS, DOCKER_CONTAINERS)}
    with fd.fake(DOCKER, DOCKER_PORT, lambda seen: fd.http_handler(routes, seen)):
        result = run("docker-api-unauthenticated", DOCKER, DOCKER_PORT, "docker")
    assert_finding(result)
    assert result.severity is Severity.CRITICAL
    got = facts(result)
    assert got["api_version"] == "1.43" and got["version"] == "24.0.7"
    assert got["containers_count"] == "1"
    assert got["containers_names"] == "boring_feynman (ubuntu:latest)"


def test_docker_api_behind_an_authenticating_proxy_passes() -> None:
    refused = ("401 Unauthorized", (("WWW-Authenticate", 'Basic realm="docker"'),
                                    ("Content-Type", "text/plain")), b"401 Unauthorized\n")
    routes = {"/version": refused, "/containers/json?all=1": refused}
    with fd.fake(DOCKER, DOCKER_PORT + 1, lambda seen: fd.http_handler(routes, seen)):
        result = run("docker-api-unauthenticated", DOCKER, DOCKER_PORT + 1, "docker")
    assert_passed(result)


def test_docker_api_with_an_authorization_plugin_passes() -> None:
    denied = ("403 Forbidden", DOCKER_HEADERS, fd.json_body({
        "message": "authorization denied by plugin opa-docker-authz: request rejected by "
                   "administrative policy"}))
    routes = {"/version": ("200 OK", DOCKER_HEADERS, DOCKER_VERSION),
              "/containers/json?all=1": denied}
    with fd.fake(DOCKER, DOCKER_PORT + 2, lambda seen: fd.http_handler(routes, seen)):
        result = run("docker-api-unauthenticated", DOCKER, DOCKER_PORT + 2, "docker")
    assert_passed(result)


# --- look-alikes: servers that say yes to everything over HTTP, or refuse at the greeting ---------

SOFT_200: list[fd.Route] = [
    ("200 OK", (("Content-Type", "text/plain"),), b"OK yes everything"),
    ("200 OK", (("Content-Type", "application/json"),), b'{"ok":true,"status":"ok"}'),
    ("200 OK", (("Content-Type", "application/json"),), b'["ok","yes"]'),
]


@pytest.mark.parametrize("check_id,service", [
    ("elasticsearch-unauthenticated", "http"),
    ("couchdb-unauthenticated", "http"),
    ("docker-api-unauthenticated", "http"),
])
@pytest.mark.parametrize("answer", range(len(SOFT_200)))
def test_http_servers_saying_yes_to_everything_give_no_finding(
        check_id: str, service: str, answer: int) -> None:
    port = 18000 + answer
    with fd.fake(NET + "20", port,
                 lambda seen: fd.http_handler({}, seen, default=SOFT_200[answer])):
        result = run(check_id, NET + "20", port, service)
    assert_passed(result)


def test_mysql_refusing_our_host_at_the_greeting_passes() -> None:
    # What MariaDB sends a client whose address matches no account's host.
    refusal = mysql.packet(0, b"\xffj\x04Host '127.0.0.1' is not allowed to connect to this "
                              b"MariaDB server")

    def handler(seen: list[bytes]) -> fd.Handler:
        return lambda conn: conn.sendall(refusal)

    with fd.fake(NET + "21", DB_PORT, handler):
        result = run("mysql-empty-root-password", NET + "21", DB_PORT, "mysql")
    assert_passed(result)
    assert "is not allowed to connect" in (result.evidence.reply or "")  # type: ignore[union-attr]


# --- parsers: well-formed samples, then random and truncated bytes --------------------------------

MARIADB_GREETING = mysql.packet(0, (
    b"\x0a5.5.5-10.11.6-MariaDB-0+deb12u1\x00\x05\x00\x00\x00"
    b"&H)8Zw5o\x00\xfe\xf7\x2d\x02\x00\xff\x81\x15\x00\x00\x00\x00\x00\x00\x1d\x00\x00\x00"
    b"wN>2#e8S[z<a\x00mysql_native_password\x00"
))


def test_mysql_handshake_and_login_packets() -> None:
    hello = mysql.parse_handshake(MARIADB_GREETING)
    assert isinstance(hello, mysql.Handshake)
    assert hello.salt == b"&H)8Zw5owN>2#e8S[z<a" and hello.auth_plugin == "mysql_native_password"
    login = mysql.build_login(hello, "root", b"")
    seq, body, rest = mysql.split_packet(login) or (0, b"", b"x")
    assert seq == 1 and rest == b"" and b"root\x00\x00mysql_native_password\x00" in body
    ok = mysql.parse_auth_result(b"\x07\x00\x00\x02\x00\x00\x00\x02\x00\x00\x00")
    assert ok is not None and ok.kind == "ok"
    err = mysql.parse_auth_result(b"\x16\x00\x00\x02\xff\x15\x04#28000Access denied")
    assert err is not None and err.kind == "error" and err.code == 1045
    assert err.message == "Access denied"
    assert len(mysql.native_password_scramble(b"secret", hello.salt)) == 20
    assert mysql.native_password_scramble(b"", hello.salt) == b""


def test_postgres_login_fold() -> None:
    def msg(kind: bytes, body: bytes) -> bytes:
        return kind + struct.pack(">I", len(body) + 4) + body

    ok = (msg(b"R", b"\0\0\0\0") + msg(b"S", b"server_version\x0015.6\0")
          + msg(b"S", b"is_superuser\x00on\0") + msg(b"Z", b"I"))
    assert postgres.login_settled(ok)
    assert not postgres.login_settled(ok[:-6])
    login = postgres.parse_login(ok)
    assert login is not None and login.auth == "ok" and login.ready
    assert login.parameters == {"server_version": "15.6", "is_superuser": "on"}
    sasl = b"R\0\0\0\x17\0\0\0\x0aSCRAM-SHA-256\0\0"
    got = postgres.parse_login(sasl)
    assert got is not None and got.auth == "sasl" and got.mechanisms == ("SCRAM-SHA-256",)


def test_memcached_stats_parse() -> None:
    reply = b"STAT pid 42\r\nSTAT version 1.6.18\r\nEND\r\n"
    assert memcached.stats_complete(reply)
    assert not memcached.stats_complete(reply[:20])
    assert memcached.parse_stats(reply) == {"pid": "42", "version": "1.6.18"}
    assert memcached.parse_stats(b"+OK\r\n250 OK\r\n") is None
    assert memcached.error_line(b"CLIENT_ERROR unauthenticated\r\n") == \
        "CLIENT_ERROR unauthenticated"


def test_json_array_prefix_keeps_whole_elements_of_a_cut_array() -> None:
    assert jsonbody.json_array_prefix(b'["a", "b", "c"]') == (["a", "b", "c"], True)
    assert jsonbody.json_array_prefix(b'["a", "b", "c') == (["a", "b"], False)
    assert jsonbody.json_array_prefix(b'{"a": 1}') is None
    assert jsonbody.json_object(b"[" * 5000) is None


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=600))
def test_parsers_never_raise_on_random_bytes(data: bytes) -> None:
    mysql.parse_handshake(data)
    mysql.parse_auth_result(data)
    mysql.parse_statistics(data)
    mysql.packet_complete(data)
    postgres.parse_login(data)
    postgres.login_settled(data)
    memcached.parse_stats(data)
    memcached.stats_complete(data)
    memcached.error_line(data)
    jsonbody.json_object(data)
    jsonbody.json_array_prefix(data)


@settings(max_examples=200, deadline=None)
@given(st.integers(min_value=0, max_value=len(MARIADB_GREETING)))
def test_truncated_greeting_never_raises(cut: int) -> None:
    got = mysql.parse_handshake(MARIADB_GREETING[:cut])
    assert got is None or cut == len(MARIADB_GREETING)


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=200), st.integers(min_value=0, max_value=64))
def test_truncated_postgres_and_json_never_raise(tail: bytes, cut: int) -> None:
    sample = b"R\0\0\0\x17\0\0\0\x0aSCRAM-SHA-256\0\0" + tail
    postgres.parse_login(sample[:cut])
    jsonbody.json_array_prefix((b'[{"index": "a"}, "x", 1, ' + tail)[:cut])
    body = struct.pack("<i", cut) + tail
    jsonbody.json_object(body)
