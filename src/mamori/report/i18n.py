"""The report's own words in English and Japanese, and how the language is chosen.

Check text (titles, why it matters, fixes) comes from the stored records (``report.text``); this
table holds only the fixed words of the reports: headings, labels, sentences around numbers.
Each message has both languages side by side, with the same ``{placeholders}``; a test fails
when one is missing. English has a plural form where a count is said ("1 check", "2 checks").
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Final

LANGS: Final = ("en", "ja")
DEFAULT_LANG: Final = "en"
_LOCALE_VARS: Final = ("LC_ALL", "LC_MESSAGES", "LANG")


@dataclass(frozen=True, slots=True)
class Msg:
    en: str
    ja: str
    en_plural: str | None = None  # English when the count ``n`` is not 1


def locale_lang(env: Mapping[str, str] | None = None) -> str:
    """The language the locale asks for: the first non-empty of LC_ALL, LC_MESSAGES, LANG
    (POSIX precedence) starting with "ja" gives "ja", anything else "en"."""
    env = os.environ if env is None else env
    for name in _LOCALE_VARS:
        value = env.get(name, "")
        if value:
            return "ja" if value.lower().startswith("ja") else "en"
    return DEFAULT_LANG


def resolve_lang(value: str | None, env: Mapping[str, str] | None = None) -> str:
    """``value`` checked ("en" or "ja", any case), or the locale's language when None.

    Raises ValueError for another language."""
    if value is None:
        return locale_lang(env)
    lang = value.strip().lower()
    if lang not in LANGS:
        raise ValueError(f"unknown language {value!r} (choose from {', '.join(LANGS)})")
    return lang


def t(key: str, lang: str, n: int | None = None, **values: object) -> str:
    """The message ``key`` in ``lang`` with ``{placeholders}`` filled (``n`` is one of them
    and picks the English plural). Unknown keys raise KeyError: a bug, found by the tests."""
    msg = MESSAGES[key]
    if lang == "ja":
        text = msg.ja
    elif n is not None and n != 1 and msg.en_plural is not None:
        text = msg.en_plural
    else:
        text = msg.en
    return text.format(n=n, **values) if (values or n is not None) else text


def severity_name(value: str, lang: str) -> str:
    """"critical", "high", ... in ``lang`` (lower case in English)."""
    return t(f"severity.{value}", lang)


def confidence_name(value: str | None, lang: str) -> str:
    return t(f"confidence.{value}", lang) if value else "?"


def layer_name(value: str, lang: str) -> str:
    """"OS", "Network", "Application" (short, for charts and Markdown headings)."""
    return t(f"layer.{value}", lang)


MESSAGES: Final[dict[str, Msg]] = {
    # -- words used everywhere ---------------------------------------------------------------
    "severity.critical": Msg("critical", "緊急"),
    "severity.high": Msg("high", "高"),
    "severity.medium": Msg("medium", "中"),
    "severity.low": Msg("low", "低"),
    "severity.info": Msg("info", "情報"),
    "confidence.confirmed": Msg("confirmed", "確認済み"),
    "confidence.likely": Msg("likely", "可能性大"),
    "status.done": Msg("done", "完了"),
    "status.running": Msg("running", "実行中"),
    "status.failed": Msg("failed", "失敗"),
    "status.interrupted": Msg("interrupted", "中断"),
    "layer.os": Msg("OS", "OS"),
    "layer.network": Msg("Network", "ネットワーク"),
    "layer.application": Msg("Application", "アプリケーション"),
    "layer_title.os": Msg("OS layer", "OS 層"),
    "layer_title.network": Msg("Network layer (TCP/IP)", "ネットワーク層 (TCP/IP)"),
    "layer_title.application": Msg("Application layer", "アプリケーション層"),
    "severity_count": Msg("{n} {severity}", "{severity} {n}"),
    "list_sep": Msg(", ", "、"),
    "this_machine": Msg("this machine", "このマシン"),
    "the_scan": Msg("the scan", "スキャン全体"),
    "summary": Msg("Summary", "概要"),
    "findings": Msg("Findings", "検出事項"),
    "fix": Msg("Fix", "対策"),
    "why": Msg("Why it matters", "なぜ問題か"),
    "evidence": Msg("Evidence", "証拠"),
    "test": Msg("Test", "実施したテスト"),
    "sent": Msg("Sent", "送信"),
    "received": Msg("Received", "受信"),
    "facts": Msg("Facts", "観測値"),
    "not_tested": Msg("Not tested", "未テスト"),
    "no_findings": Msg("No findings.", "検出事項なし。"),
    "no_fix_given": Msg("none given", "記載なし"),
    "top_three": Msg("Top things to fix", "優先して直すもの"),
    "checks_passed": Msg("{n} check passed", "合格したチェック: {n} 件", "{n} checks passed"),
    "untested_not_closed": Msg(
        "{n} probe(s) could not finish: untested is not the same as closed.",
        "{n} 件のプローブが完了しなかった。未テストは「閉じている」という意味ではない。",
    ),
    "only_problems_hidden": Msg(
        "hidden by --only-problems: {passed} passed, {info} info, {closed} closed or filtered",
        "--only-problems により非表示: 合格 {passed} 件、情報 {info} 件、"
        "閉じている/フィルタ {closed} 件",
    ),
    # -- a finding's exposure (`mamori check`: the listener that graded it) -----------------
    "exposure.listening": Msg("listening on {where} ({scope})", "{where} ({scope}) で待ち受け"),
    "exposure.listening_fw": Msg(
        "listening on {where} ({scope}), firewall: {firewall}",
        "{where} ({scope}) で待ち受け、ファイアウォール: {firewall}",
    ),
    "exposure.scope.loopback": Msg("this machine only", "このマシンのみ"),
    "exposure.scope.interface": Msg("one interface", "1 つのインターフェース"),
    "exposure.scope.all": Msg("all interfaces", "すべてのインターフェース"),
    "exposure.fw.allowed": Msg("allowed", "許可"),
    "exposure.fw.blocked": Msg("blocked", "遮断"),
    "exposure.fw.undetermined": Msg("undetermined", "判定不能"),
    "exposure.fw.no-firewall": Msg("no firewall", "ファイアウォールなし"),
    "exposure.label": Msg("Exposure", "露出"),
    # -- the terminal table (scan view and checklist) ----------------------------------------
    "table.started": Msg("started", "開始"),
    "table.took": Msg("took", "所要"),
    "table.targets": Msg("targets: ", "対象: "),
    "table.warn.interrupted": Msg(
        "SCAN INTERRUPTED: the process stopped before finishing; the results below are "
        "incomplete.",
        "スキャン中断: 処理が途中で止まったため、以下の結果は不完全。",
    ),
    "table.warn.failed": Msg(
        "SCAN FAILED: the results below are incomplete.",
        "スキャン失敗: 以下の結果は不完全。",
    ),
    "table.warn.running": Msg(
        "SCAN STILL RUNNING (or stopped on another host): the results below are partial.",
        "スキャン実行中 (または別のホストで停止): 以下の結果は途中までのもの。",
    ),
    "table.no_hosts": Msg("no hosts", "ホストなし"),
    "table.host": Msg("Host {address}{name}", "ホスト {address}{name}"),
    "table.col.port": Msg("PORT", "ポート"),
    "table.col.state": Msg("STATE", "状態"),
    "table.col.service": Msg("SERVICE", "サービス"),
    "table.col.version": Msg("VERSION", "バージョン"),
    "table.no_ports": Msg("  no ports to list", "  表示するポートなし"),
    "table.not_shown": Msg(
        "Not shown: {n} {state} {proto} port",
        "非表示: {state} の {proto} ポート {n} 個",
        "Not shown: {n} {state} {proto} ports",
    ),
    "table.not_tested_prefix": Msg("not tested: ", "未テスト: "),
    "table.not_tested_check": Msg(
        "not tested: {check} on {where}: {reason}", "未テスト: {check} ({where}): {reason}"
    ),
    "table.not_tested_machine": Msg("not tested: {check}: {reason}", "未テスト: {check}: {reason}"),
    "table.findings_n": Msg("Findings ({n})", "検出事項 ({n})"),
    "table.findings_none": Msg("Findings: none", "検出事項: なし"),
    "table.checks_not_tested": Msg("Checks not tested ({n}):", "未テストのチェック ({n}):"),
    "table.loose_not_tested": Msg("Not tested ({n}):", "未テスト ({n}):"),
    "table.test": Msg("test: ", "テスト: "),
    "table.fix": Msg("fix ({platform}): ", "対策 ({platform}): "),
    "table.summary_none": Msg(
        "Summary: no findings", "概要: 検出事項なし"
    ),
    "table.summary": Msg(
        "Summary: {n} finding", "概要: 検出事項 {n} 件", "Summary: {n} findings"
    ),
    "table.fix_first": Msg("Fix first:", "優先して直すもの:"),
    "table.summary_checks": Msg(
        "checks: {passed} passed, {not_tested} not tested; {errors} probe(s) not finished",
        "チェック: 合格 {passed} 件、未テスト {not_tested} 件、完了しなかったプローブ {errors} 件",
    ),
    "table.why": Msg("why: ", "理由: "),
    "table.reply": Msg("reply: ", "応答: "),
    "table.rule": Msg("rule: ", "ルール: "),
    "table.firewall": Msg("firewall: ", "ファイアウォール: "),
    "table.process": Msg(
        "process {process}{user}, listening on {where} ({scope})",
        "プロセス {process}{user} が {where} ({scope}) で待ち受け",
    ),
    "table.as_user": Msg(" as {user}", " (ユーザー {user})"),
    "table.fix_none": Msg(
        "fix: none given for Linux or macOS", "対策: Linux・macOS 向けの記載なし"
    ),
    "table.fw_not_asked": Msg("not asked (loopback only)", "確認せず (ループバックのみ)"),
    "table.unknown": Msg("unknown", "不明"),
    "table.checklist_none": Msg("Checklist: no findings", "チェックリスト: 検出事項なし"),
    "table.checklist": Msg(
        "Checklist: {n} finding", "チェックリスト: 検出事項 {n} 件", "Checklist: {n} findings"
    ),
    "table.layer_none": Msg("no findings", "検出事項なし"),
    "table.listeners_none": Msg("Listeners: none found", "待ち受けソケット: なし"),
    "table.listeners": Msg(
        "Listeners ({n}, {exposed} reachable from the network)",
        "待ち受けソケット ({n} 件、うちネットワークから到達可能 {exposed} 件)",
    ),
    "table.col.proto": Msg("PROTO", "プロトコル"),
    "table.col.address": Msg("ADDRESS:PORT", "アドレス:ポート"),
    "table.col.scope": Msg("SCOPE", "範囲"),
    "table.col.process": Msg("PROCESS(pid)", "プロセス(pid)"),
    "table.col.user": Msg("USER", "ユーザー"),
    "table.col.firewall": Msg("FIREWALL", "ファイアウォール"),
    "table.unidentified": Msg("unidentified", "識別できず"),
    "table.not_probed": Msg("not probed", "プローブせず"),
    "table.fw_undetermined": Msg(
        "firewall undetermined: {where}{backend}: {reason}",
        "ファイアウォール判定不能: {where}{backend}: {reason}",
    ),
    "table.fw_no_backend": Msg(
        "no firewall backend could be read", "読み取れるファイアウォールがなかった"
    ),
    "table.not_probed_line": Msg(
        "not probed: {where}: {reason}", "プローブせず: {where}: {reason}"
    ),
    "table.no_reason": Msg("no reason recorded", "理由の記録なし"),
    "table.probes_not_finished": Msg(
        "Probes not finished ({n}):", "完了しなかったプローブ ({n}):"
    ),
    # -- Markdown and HTML -------------------------------------------------------------------
    "doc.status": Msg("Status", "状態"),
    "doc.kind": Msg("Kind", "種類"),
    "doc.targets": Msg("Targets", "対象"),
    "doc.no_targets": Msg("no targets", "対象なし"),
    "doc.started": Msg("Started", "開始"),
    "doc.finished": Msg("Finished", "終了"),
    "doc.version": Msg("mamori version", "mamori のバージョン"),
    "doc.findings_n": Msg("{n} finding", "検出事項 {n} 件", "{n} findings"),
    "doc.severity": Msg("Severity", "深刻度"),
    "doc.confidence": Msg("Confidence", "確度"),
    "doc.on": Msg("on", "対象"),
    "doc.checks_line": Msg(
        "Checks: {passed} passed, {not_tested} not tested; {errors} probe(s) not finished.",
        "チェック: 合格 {passed} 件、未テスト {not_tested} 件、"
        "完了しなかったプローブ {errors} 件。",
    ),
    "doc.listener": Msg("Listener", "待ち受け"),
    "doc.firewall": Msg("Firewall", "ファイアウォール"),
    "doc.rule": Msg("Rule", "ルール"),
    "doc.checks_not_tested": Msg("Checks not tested ({n})", "未テストのチェック ({n})"),
    "doc.not_tested_note": Msg(
        "Not tested is not the same as passed.", "未テストは「合格」という意味ではない。"
    ),
    "doc.ports": Msg("Ports", "ポート"),
    "doc.no_open_ports": Msg("No open ports found.", "開いているポートは見つからなかった。"),
    "doc.address": Msg("Address", "アドレス"),
    "doc.port": Msg("Port", "ポート"),
    "doc.state": Msg("State", "状態"),
    "doc.service": Msg("Service", "サービス"),
    "doc.product": Msg("Product", "製品"),
    "doc.banner": Msg("Banner", "バナー"),
    "doc.not_shown": Msg("not shown: {counts}", "非表示: {counts}"),
    "doc.listeners": Msg("Listeners ({n})", "待ち受けソケット ({n})"),
    "doc.none_found": Msg("None found.", "なし。"),
    "doc.proto": Msg("Proto", "プロトコル"),
    "doc.address_port": Msg("Address:port", "アドレス:ポート"),
    "doc.scope": Msg("Scope", "範囲"),
    "doc.process": Msg("Process (pid)", "プロセス (pid)"),
    "doc.user": Msg("User", "ユーザー"),
    "doc.not_probed": Msg("not probed", "プローブせず"),
    "doc.probes_not_finished": Msg("Probes not finished ({n})", "完了しなかったプローブ ({n})"),
    "doc.untested_note": Msg(
        "Untested is not the same as closed.", "未テストは「閉じている」という意味ではない。"
    ),
    "html.title": Msg("mamori report", "mamori レポート"),
    "html.chart": Msg("Findings by severity and layer", "深刻度別・層別の検出事項"),
    "html.by_severity": Msg("By severity", "深刻度別"),
    "html.by_layer": Msg("By layer", "層別"),
    "html.copy": Msg("Copy", "コピー"),
    "html.copied": Msg("Copied", "コピーしました"),
    "html.copy_failed": Msg("Selected: press Ctrl+C", "選択しました: Ctrl+C でコピー"),
    "html.duration": Msg("Duration", "所要時間"),
    "html.passed": Msg("Passed", "合格"),
    "html.not_tested_intro": Msg(
        "These checks could not run to the end: nothing is known about them, which is not the "
        "same as clean.",
        "これらのチェックは最後まで実行できなかった。問題がないという意味ではない。",
    ),
    "html.generated": Msg("Generated by mamori {version}.", "mamori {version} で作成。"),
    "html.open_all": Msg("Open all", "すべて開く"),
    "html.close_all": Msg("Close all", "すべて閉じる"),
    "html.warn": Msg("Incomplete", "不完全"),
    # -- diff --------------------------------------------------------------------------------
    "diff.head": Msg(
        "diff: scan {old} ({old_time}) -> scan {new} ({new_time}), targets {targets}",
        "差分: スキャン {old} ({old_time}) → スキャン {new} ({new_time})、対象 {targets}",
    ),
    "diff.title": Msg(
        "What changed: scan {old} to scan {new}", "変更点: スキャン {old} → スキャン {new}"
    ),
    "diff.no_change": Msg("no change", "変化なし"),
    "diff.worse": Msg("WORSE: something new is exposed", "悪化: 新たに露出しているものがある"),
    "diff.not_worse": Msg("not worse", "悪化なし"),
    "diff.new": Msg("new findings", "新しい検出事項"),
    "diff.changed": Msg("changed findings", "変化した検出事項"),
    "diff.fixed": Msg("fixed findings", "解消した検出事項"),
    "diff.not_compared": Msg("findings not compared (the new run did not cover them; not fixed)",
                             "比較していない検出事項 (今回の実行の対象外。解消ではない)"),
    "diff.ports_not_compared": Msg("ports not compared (the new run did not probe them)",
                                   "比較していないポート (今回は調べていない)"),
    "diff.reason.not-tested": Msg("the check could not run to the end",
                                  "チェックが最後まで実行できなかった"),
    "diff.reason.check-not-run": Msg("the new run did not run this check",
                                     "今回はこのチェックを実行していない"),
    "diff.reason.port-not-probed": Msg("the new run did not probe this port",
                                       "今回はこのポートを調べていない"),
    "diff.opened": Msg("ports opened", "開いたポート"),
    "diff.closed": Msg("ports closed", "閉じたポート"),
    "diff.services": Msg("services changed", "変化したサービス"),
    "diff.accepted": Msg("new findings already accepted (not worse)",
                         "受容済みの新しい検出事項 (悪化ではない)"),
    "accepted.line": Msg("accepted risk #{id}: {reason} ({until})",
                         "受容したリスク #{id}: {reason} ({until})"),
    "accepted.until": Msg("until {date}", "{date} まで"),
    "accepted.no_end": Msg("until removed", "解除するまで"),
    "diff.old_run": Msg("Old run", "前回"),
    "diff.new_run": Msg("New run", "今回"),
    # -- the joined path verdict (`mamori check`: router, NAT, IPv6, outside probe) ----------
    "exposure.reach": Msg(", joined reach: {reach}", "、総合した到達範囲: {reach}"),
    "path.title": Msg("What the internet sees: who reaches each listener (joined verdict)",
                      "インターネットから見えるもの: 各待ち受けに誰が届くか (総合判定)"),
    "path.col.listener": Msg("LISTENER", "待ち受け"),
    "path.col.family": Msg("FAMILY", "IP 種別"),
    "path.col.reach": Msg("REACH", "到達範囲"),
    "path.col.chain": Msg("CHAIN", "経路"),
    "path.col.why": Msg("WHY", "根拠"),
    "path.reach.internet": Msg("internet", "インターネット"),
    "path.reach.lan": Msg("LAN only", "LAN のみ"),
    "path.reach.host": Msg("this host only", "このホストのみ"),
    "path.reach.undetermined": Msg("undetermined", "判定不能"),
    "path.proven": Msg("proven from outside", "外部から確認済み"),
    "path.missing": Msg("missing: {what}", "不足: {what}"),
    "path.mapping": Msg("router mapping: {what}", "ルーターのマッピング: {what}"),
    "path.step.bind": Msg("bind", "バインド"),
    "path.step.host-firewall": Msg("host firewall", "ホストFW"),
    "path.step.router": Msg("router", "ルーター"),
    "path.step.nat": Msg("NAT", "NAT 変換"),
    "path.step.ipv6": Msg("IPv6", "IPv6 経路"),
    "path.step.outside": Msg("outside", "外部"),
    "path.router": Msg("Router: {what}", "ルーター: {what}"),
    "path.router_none": Msg("Router: not read (no router answered, or not asked)",
                            "ルーター: 読めていない (応答なし、または未実行)"),
    "path.router_found": Msg("{protocol} at {gateway}, external address {external} ({nat}), "
                             "{n} mappings", "{gateway} の {protocol}、外部アドレス {external} "
                             "({nat})、マッピング {n} 件"),
    "path.not_told": Msg("not told", "通知なし"),
    "path.router_error": Msg("not read: {error}", "読めていない: {error}"),
    "path.ipv6": Msg("This host's IPv6 addresses: {list}", "このホストの IPv6 アドレス: {list}"),
    "path.ipv6_none": Msg("This host has no global or ULA IPv6 address",
                          "このホストにはグローバル / ULA の IPv6 アドレスがない"),
    "path.other_host": Msg("Mappings to other LAN hosts (not about this host): {what}",
                           "他の LAN ホストへのマッピング (このホストの件ではない): {what}"),
    "path.unmatched": Msg("Mapping to this host where nothing listens: {what}",
                          "何も待ち受けていないこのホストへのマッピング: {what}"),
    "path.note": Msg("note: {what}", "注: {what}"),
    "path.nat_hides": Msg("IPv6 exposes what NAT hides: IPv4 is closed at the router, IPv6 is "
                          "not known to be", "NAT が隠すものを IPv6 が晒している: IPv4 はルーター"
                          "で閉じているが、IPv6 は閉じていると分かっていない"),
    "path.cgnat": Msg("behind CGNAT: not reachable over IPv4",
                      "CGNAT の内側: IPv4 では届かない"),
    "path.no_public": Msg("the router reports no public IPv4 address (behind CGNAT or another "
                          "NAT): not reachable over IPv4 from the internet, likely",
                          "ルーターは公開 IPv4 アドレスを持っていないと報告している (CGNAT など"
                          "別の NAT の内側): インターネットから IPv4 では届かない (推定)"),
    "path.static_forward": Msg(
        "reachable although the router lists no mapping for it over UPnP: a port forward set "
        "in the router itself, or a DMZ host",
        "ルーターは UPnP でこのポートへのマッピングを示さないが届く: ルーター自体に設定した"
        "ポート転送、または DMZ ホスト"),
    "path.contradiction": Msg("contradiction: {what}", "矛盾: {what}"),
    "outside.title": Msg("What the internet sees (mamori serve's outside probe)",
                         "インターネットから見えるもの (mamori serve による外部からの検査)"),
    "outside.via": Msg("IPv{family} via {service}", "{service} 経由の IPv{family}"),
    "outside.seen": Msg(", seen as {address}", "、見えたアドレス {address}"),
    "outside.open": Msg("open (reachable from outside)", "開いている (外部から届く)"),
    "outside.closed": Msg("closed (refused)", "閉じている (拒否)"),
    "outside.filtered": Msg("filtered (no answer)", "フィルタ (応答なし)"),
    "outside.not-tested": Msg("not tested", "未検査"),
    "outside.error": Msg("not tested: {error}", "未検査: {error}"),
    "outside.incomplete": Msg("incomplete: {error}", "不完全: {error}"),
}
