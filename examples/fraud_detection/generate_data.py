"""Generate the eight source CSVs of the fraud_detection example, deterministically.

Every value is derived from the row number through DuckDB's ``hash`` function, so the same
``--transactions N`` always produces byte-identical files (with the same DuckDB version) and
five million transactions take seconds, not minutes. Usage::

    python examples/fraud_detection/generate_data.py --transactions 10000 [--out DIR]
"""

from __future__ import annotations

import argparse
import math
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import duckdb

DEFAULT_TRANSACTIONS = 10_000
# Above this, the IP numbering (0.3 addresses per transaction) runs out of valid first octets.
MAX_TRANSACTIONS = 50_000_000
DEFAULT_OUT_DIR = Path(__file__).resolve().parent / "data"

# Rows of each source per 100 transactions (10,000 transactions -> 5,000 user profiles, ...).
ROWS_PER_100_TRANSACTIONS = {
    "transactions": 100,
    "user_profiles": 50,
    "device_fingerprints": 80,
    "ip_geolocation": 30,
    "merchant_data": 15,
    "card_data": 60,
    "fraud_labels": 20,
    "realtime_alerts": 10,
}

START_TS = "2024-01-01 00:00:00"
WINDOW_DAYS = 90
MS_PER_HOUR = 3_600_000
MS_PER_DAY = 24 * MS_PER_HOUR

# NOTE: the fraud rates below give ~2% fraudulent transactions; every fraudulent transaction is
# reviewed, so the 20% of transactions in fraud_labels are ~10% fraud.
BURST_BLOCK = 8  # consecutive transactions that a burst (card testing) attack spans
BURST_BLOCK_SHARE = 0.012  # share of blocks that are bursts on one compromised card
BURST_FRAUD_SHARE = 0.8  # share of burst transactions that end up confirmed fraud
TAKEOVER_SHARE = 0.008  # isolated account-takeover transactions (new device, risky IP)
QUIET_FRAUD_SHARE = 0.002  # stolen-card fraud that looks like ordinary spending

# Value lists for _choice: a value listed twice is drawn twice as often.
CLEAN_COUNTRIES = ["US", "US", "US", "US", "GB", "GB", "DE", "DE", "FR", "CA", "AU", "SG"]
CLEAN_COUNTRIES += ["IN", "BR", "MX", "ID"]
RISKY_COUNTRIES = ["NG", "RO", "VN", "BR", "ID", "US", "NL", "UA"]
CLEAN_NETWORKS = ["residential", "residential", "residential", "mobile", "mobile", "business"]
RISKY_NETWORKS = ["hosting", "vpn", "hosting", "tor"]
USUAL_CHANNELS = ["pos", "pos", "pos", "online", "online", "mobile_app"]
FRAUD_CHANNELS = ["online", "online", "online", "online", "mobile_app"]
NAME_HEADS = ["Blue", "Golden", "Urban", "Quick", "Prime", "North", "Sunny", "Metro", "Silver"]
NAME_TAILS = ["Market", "Outlet", "Store", "Shop", "Hub", "Depot", "Express", "Works"]

GEO_CENTROIDS = """
    ('US', 39.8, -98.6), ('GB', 54.0, -2.0), ('DE', 51.2, 10.4), ('FR', 46.6, 2.2),
    ('CA', 56.1, -106.3), ('AU', -25.3, 133.8), ('SG', 1.35, 103.8), ('IN', 20.6, 78.9),
    ('BR', -14.2, -51.9), ('MX', 23.6, -102.6), ('ID', -2.5, 118.0), ('NG', 9.1, 8.7),
    ('RO', 45.9, 25.0), ('VN', 14.1, 108.3), ('NL', 52.1, 5.3), ('UA', 48.4, 31.2)
"""

# Merchant category -> ISO 18245 merchant category code (MCC).
CLEAN_CATEGORIES = {
    "grocery": "5411",
    "restaurants": "5812",
    "fuel": "5541",
    "apparel": "5651",
    "pharmacy": "5912",
    "transit": "4111",
    "utilities": "4900",
    "entertainment": "7832",
}
RISKY_CATEGORIES = {
    "electronics": "5732",
    "gift_cards": "5947",
    "crypto_exchange": "6051",
    "travel_agency": "4722",
    "jewelry": "5944",
    "digital_goods": "5818",
}


@dataclass(frozen=True)
class Pool:
    """A contiguous range of ids ``first .. first + size - 1`` to draw keys from."""

    first: int
    size: int
    marked: bool = False  # ids of this pool carry a risk flag (see ``holds``)

    def pick(self, key_sql: str, salt: str) -> str:
        """SQL for a pseudo-random id of this pool, fixed by ``key_sql`` and ``salt``."""
        return f"({self.first} + hash({key_sql}, '{salt}') % {self.size})::BIGINT"

    def holds(self, id_sql: str) -> str:
        """SQL that is true for the ids of a marked pool (always false for an unmarked one)."""
        return f"({id_sql} >= {self.first})" if self.marked else "false"


def split_pools(total: int, risky: int) -> tuple[Pool, Pool]:
    """Split ids 1..total into an ordinary pool and a marked pool of the last ``risky`` ids.

    With no room for risky ids (tiny data sets) both pools are the whole, unmarked range.
    """
    if risky <= 0 or risky >= total:
        whole = Pool(1, total)
        return whole, whole
    return Pool(1, total - risky), Pool(total - risky + 1, risky, marked=True)


def row_counts(transactions: int) -> dict[str, int]:
    """Rows of every source for ``transactions`` transactions: proportional, rounded, at least 1."""
    return {
        name: max(1, (transactions * per_100 + 50) // 100)
        for name, per_100 in ROWS_PER_100_TRANSACTIONS.items()
    }


def _rnd(key_sql: str, salt: str) -> str:
    """SQL for a pseudo-random double in [0, 1) fixed by ``key_sql`` and ``salt``."""
    return f"(hash({key_sql}, '{salt}') / 18446744073709551616.0)"


def _choice(key_sql: str, salt: str, options: list[str]) -> str:
    """SQL picking one of ``options`` (repeat an option to weight it) fixed by key and salt."""
    quoted = ", ".join("'" + option + "'" for option in options)
    return f"list_element([{quoted}], (1 + hash({key_sql}, '{salt}') % {len(options)})::BIGINT)"


def _ip_address(id_sql: str) -> str:
    """SQL for the IPv4 address of IP number ``id_sql``; the first three octets encode the id."""
    return (
        f"printf('%d.%d.%d.%d', 23 + {id_sql} // 65536, ({id_sql} // 256) % 256, {id_sql} % 256, "
        f"1 + hash({id_sql}, 'ip_host') % 254)"
    )


def _offset_ms(key_sql: str, salt: str, low_ms: int, high_ms: int) -> str:
    """SQL for a pseudo-random millisecond interval in [low_ms, high_ms)."""
    return f"to_milliseconds(({low_ms} + hash({key_sql}, '{salt}') % {high_ms - low_ms})::BIGINT)"


def _coprime_step(modulus: int) -> int:
    """A step that visits every residue of ``modulus`` once (gcd 1), far from 1 for shuffling."""
    step = 7919
    while math.gcd(step, modulus) != 1:
        step += 2
    return step


def _build_statements(counts: dict[str, int]) -> list[str]:
    """The SQL that fills the internal tables the CSVs are exported from, in order."""
    n_txn = counts["transactions"]
    n_users = counts["user_profiles"]
    n_devices = counts["device_fingerprints"]
    n_ips = counts["ip_geolocation"]
    n_merchants = counts["merchant_data"]
    n_cards = counts["card_data"]

    clean_ips, risky_ips = split_pools(n_ips, n_ips // 10)
    clean_devices, fraud_devices = split_pools(n_devices, n_devices // 20)
    _, risky_merchants = split_pools(n_merchants, n_merchants // 5)
    all_merchants = Pool(1, n_merchants)
    all_cards = Pool(1, n_cards)
    all_users = Pool(1, n_users)
    span_ms = WINDOW_DAYS * MS_PER_DAY
    start = f"TIMESTAMP '{START_TS}'"

    geo = f"CREATE TABLE geo AS SELECT * FROM (VALUES {GEO_CENTROIDS}) AS g(country, lat, lon)"

    mcc_rows = ", ".join(
        f"('{name}', '{mcc}')" for name, mcc in {**CLEAN_CATEGORIES, **RISKY_CATEGORIES}.items()
    )
    categories = f"CREATE TABLE categories AS SELECT * FROM (VALUES {mcc_rows}) AS c(category, mcc)"

    ips = f"""
        CREATE TABLE ips AS
        WITH k AS (
            SELECT range + 1 AS ip_id, {risky_ips.holds("range + 1")} AS risky
            FROM range({n_ips})
        ),
        placed AS (
            SELECT ip_id, risky,
                   CASE WHEN risky THEN {_choice("ip_id", "ip_country", RISKY_COUNTRIES)}
                        ELSE {_choice("ip_id", "ip_country", CLEAN_COUNTRIES)} END AS country
            FROM k
        )
        SELECT p.ip_id, p.risky, p.country,
               {_ip_address("p.ip_id")} AS ip_address,
               round(g.lat + 6 * ({_rnd("p.ip_id", "ip_lat")} - 0.5), 4) AS latitude,
               round(g.lon + 8 * ({_rnd("p.ip_id", "ip_lon")} - 0.5), 4) AS longitude,
               (1000 + hash(p.ip_id, 'ip_asn') % 60000)::BIGINT AS asn,
               CASE WHEN p.risky THEN {_choice("p.ip_id", "ip_net", RISKY_NETWORKS)}
                    ELSE {_choice("p.ip_id", "ip_net", CLEAN_NETWORKS)} END AS network_type,
               CASE WHEN p.risky THEN {_rnd("p.ip_id", "ip_proxy")} < 0.7
                    ELSE {_rnd("p.ip_id", "ip_proxy")} < 0.02 END AS is_proxy,
               round(CASE WHEN p.risky THEN 40 * {_rnd("p.ip_id", "ip_rep")}
                          ELSE 55 + 45 * {_rnd("p.ip_id", "ip_rep")} END, 1)
                   AS ip_reputation_score
        FROM placed p
        JOIN geo g USING (country)
    """

    users = f"""
        CREATE TABLE users AS
        WITH k AS (
            SELECT range + 1 AS customer_id,
                   {clean_ips.pick("range + 1", "home_ip")} AS home_ip_id,
                   {clean_devices.pick("range + 1", "home_device")} AS home_device_id
            FROM range({n_users})
        )
        SELECT k.customer_id, k.home_ip_id, k.home_device_id,
               CASE WHEN {_rnd("k.customer_id", "expat")} < 0.05
                    THEN {_choice("k.customer_id", "expat_country", CLEAN_COUNTRIES)}
                    ELSE i.country END AS home_country,
               (DATE '2024-01-01' - (1 + hash(k.customer_id, 'signup') % 2500)::INTEGER)
                   AS signup_date,
               (18 + hash(k.customer_id, 'age') % 63)::BIGINT AS age,
               {_choice("k.customer_id", "tier", ["basic"] * 3 + ["plus"] * 2 + ["premium"])}
                   AS account_tier,
               {_rnd("k.customer_id", "kyc")} < 0.96 AS kyc_verified,
               round(200 + 2800 * pow({_rnd("k.customer_id", "spend")}, 2), 2)
                   AS avg_monthly_spend
        FROM k
        JOIN ips i ON i.ip_id = k.home_ip_id
    """

    # NOTE: the first n_users cards go one to each customer, shuffled by a step coprime with
    # n_users; the remaining cards are second cards of random customers.
    owner_step = _coprime_step(n_users)
    cards = f"""
        CREATE TABLE cards AS
        WITH k AS (
            SELECT range + 1 AS card_id,
                   CASE WHEN range < {n_users}
                        THEN (range * {owner_step} + {n_users // 3}) % {n_users} + 1
                        ELSE {all_users.pick("range + 1", "card_owner")} END AS customer_id,
                   CASE WHEN {_rnd("range + 1", "card_type")} < 0.55 THEN 'credit'
                        WHEN {_rnd("range + 1", "card_type")} < 0.95 THEN 'debit'
                        ELSE 'prepaid' END AS card_type,
                   (DATE '2024-01-01' - (15 + hash(range + 1, 'issued') % 1400)::INTEGER)
                       AS issue_date
            FROM range({n_cards})
        )
        SELECT card_id, customer_id, card_type,
               {_choice("card_id", "network", ["visa", "visa", "mastercard", "mastercard", "amex"])}
                   AS card_network,
               issue_date,
               (issue_date + to_years((3 + hash(card_id, 'valid') % 3)::INTEGER))::DATE
                   AS expiry_date,
               CASE WHEN card_type = 'credit'
                    THEN (1000 * (1 + hash(card_id, 'limit') % 20))::DOUBLE END AS credit_limit,
               {_rnd("card_id", "virtual")} < 0.15 AS is_virtual
        FROM k
    """

    transactions = f"""
        CREATE TABLE tx AS
        WITH base AS (
            SELECT range AS i,
                   range // {BURST_BLOCK} AS block,
                   {_rnd(f"range // {BURST_BLOCK}", "burst")} < {BURST_BLOCK_SHARE} AS in_burst
            FROM range({n_txn})
        ),
        scenario AS (
            SELECT i, block, in_burst,
                   in_burst AND {_rnd("i", "burst_fraud")} < {BURST_FRAUD_SHARE} AS burst_fraud,
                   NOT in_burst AND {_rnd("i", "takeover")} < {TAKEOVER_SHARE} AS takeover,
                   NOT in_burst AND {_rnd("i", "quiet")} < {QUIET_FRAUD_SHARE} AS quiet_fraud,
                   CASE WHEN in_burst THEN {all_cards.pick("block", "burst_card")}
                        ELSE {all_cards.pick("i", "card")} END AS card_id,
                   {_rnd("i", "ip_choice")} AS ip_choice,
                   sqrt(-2 * ln((hash(i, 'amount_u1') % 1000000 + 0.5) / 1000000))
                       * cos(2 * pi() * {_rnd("i", "amount_u2")}) AS amount_z
            FROM base
        ),
        placed AS (
            SELECT s.*, c.customer_id, u.home_device_id, u.home_ip_id
            FROM scenario s
            JOIN cards c USING (card_id)
            JOIN users u ON u.customer_id = c.customer_id
        ),
        drawn AS (
            SELECT i,
                   customer_id,
                   card_id,
                   home_device_id,
                   CASE WHEN (in_burst OR takeover) AND {_rnd("i", "merchant_kind")} < 0.65
                        THEN {risky_merchants.pick("i", "fraud_merchant")}
                        ELSE {all_merchants.pick("i", "merchant")} END AS merchant_id,
                   CASE WHEN in_burst THEN {fraud_devices.pick("block", "burst_device")}
                        WHEN takeover THEN {fraud_devices.pick("i", "takeover_device")}
                        WHEN {_rnd("i", "other_device")} < 0.06
                            THEN {clean_devices.pick("i", "other_device")}
                        ELSE home_device_id END AS device_id,
                   CASE WHEN in_burst THEN {risky_ips.pick("block", "burst_ip")}
                        WHEN takeover AND ip_choice < 0.8 THEN {risky_ips.pick("i", "takeover_ip")}
                        WHEN takeover THEN {clean_ips.pick("i", "takeover_ip")}
                        WHEN ip_choice < 0.85 THEN home_ip_id
                        WHEN ip_choice < 0.98 THEN {clean_ips.pick("i", "travel_ip")}
                        ELSE {risky_ips.pick("i", "vpn_ip")} END AS ip_id,
                   round(CASE WHEN in_burst AND i % {BURST_BLOCK} < 3
                                  THEN 1 + 4 * {_rnd("i", "amount")}
                              WHEN in_burst THEN 150 + 1850 * {_rnd("i", "amount")}
                              WHEN takeover THEN 200 + 2800 * {_rnd("i", "amount")}
                              ELSE least(exp(3.4 + 1.1 * amount_z), 9000) END, 2) AS amount,
                   CASE WHEN in_burst OR takeover
                        THEN {_choice("i", "channel", FRAUD_CHANNELS)}
                        ELSE {_choice("i", "channel", USUAL_CHANNELS)}
                   END AS channel,
                   {start} + to_milliseconds((i * {span_ms} // {n_txn})::BIGINT) AS txn_ts,
                   burst_fraud OR takeover OR quiet_fraud AS is_fraud,
                   CASE WHEN burst_fraud THEN 'card_testing'
                        WHEN takeover THEN 'account_takeover'
                        WHEN quiet_fraud THEN 'stolen_card'
                        ELSE 'not_fraud' END AS fraud_type,
                   in_burst
            FROM placed
        )
        -- Suspicious: what an analyst or a rule looks at twice (off the owner's usual device,
        -- from a risky network, or unusually large).
        SELECT * EXCLUDE (home_device_id),
               device_id <> home_device_id OR {risky_ips.holds("ip_id")} OR amount > 400
                   AS suspicious
        FROM drawn
    """

    devices = f"""
        CREATE TABLE devices AS
        WITH k AS (
            SELECT range + 1 AS device_id,
                   {fraud_devices.holds("range + 1")} AS fraud_pool,
                   CASE WHEN {_rnd("range + 1", "device_type")} < 0.6 THEN 'mobile'
                        WHEN {_rnd("range + 1", "device_type")} < 0.9 THEN 'desktop'
                        ELSE 'tablet' END AS device_type
            FROM range({n_devices})
        ),
        first_use AS (
            SELECT device_id, min(txn_ts) AS first_use_ts FROM tx GROUP BY device_id
        )
        SELECT k.device_id, k.device_type,
               CASE k.device_type
                   WHEN 'mobile' THEN {_choice("k.device_id", "os", ["iOS", "Android"])}
                   WHEN 'desktop'
                       THEN {_choice("k.device_id", "os", ["Windows", "Windows", "macOS", "Linux"])}
                   ELSE {_choice("k.device_id", "os", ["iPadOS", "Android"])}
               END AS os,
               CASE WHEN k.fraud_pool THEN {_rnd("k.device_id", "emulator")} < 0.3
                    ELSE {_rnd("k.device_id", "emulator")} < 0.003 END AS is_emulator,
               CASE WHEN f.first_use_ts IS NULL
                        THEN {start} - {_offset_ms("k.device_id", "seen", 0, 900 * MS_PER_DAY)}
                    WHEN k.fraud_pool OR {_rnd("k.device_id", "fresh")} < 0.05
                        THEN f.first_use_ts
                             - {_offset_ms("k.device_id", "seen", 60_000, 12 * MS_PER_HOUR)}
                    ELSE f.first_use_ts
                         - {_offset_ms("k.device_id", "seen", MS_PER_DAY, 900 * MS_PER_DAY)}
               END AS first_seen_ts
        FROM k
        LEFT JOIN first_use f USING (device_id)
    """

    onboarding_age = _offset_ms("k.merchant_id", "onboarded", 30 * MS_PER_DAY, 2000 * MS_PER_DAY)
    merchants = f"""
        CREATE TABLE merchants AS
        WITH k AS (
            SELECT range + 1 AS merchant_id,
                   CASE WHEN {risky_merchants.holds("range + 1")}
                        THEN {_choice("range + 1", "category", list(RISKY_CATEGORIES))}
                        ELSE {_choice("range + 1", "category", list(CLEAN_CATEGORIES))}
                   END AS merchant_category
            FROM range({n_merchants})
        )
        SELECT k.merchant_id,
               {_choice("k.merchant_id", "name_head", NAME_HEADS)} || ' '
               || {_choice("k.merchant_id", "name_tail", NAME_TAILS)} || ' ' || k.merchant_id
                   AS merchant_name,
               k.merchant_category,
               c.mcc,
               {_choice("k.merchant_id", "merchant_country", CLEAN_COUNTRIES)}
                   AS merchant_country,
               {start} - {onboarding_age} AS onboarded_at
        FROM k
        JOIN categories c ON c.category = k.merchant_category
    """

    labels = f"""
        CREATE TABLE labels AS
        WITH reviewed AS (
            SELECT *
            FROM tx
            ORDER BY is_fraud DESC,
                     {_rnd("i", "review")} * CASE WHEN suspicious THEN 0.3 ELSE 1.0 END,
                     i
            LIMIT {counts["fraud_labels"]}
        )
        SELECT i, customer_id, merchant_id, is_fraud, fraud_type,
               CASE WHEN is_fraud AND {_rnd("i", "chargeback")} < 0.7 THEN 'chargeback'
                    ELSE 'manual_review' END AS label_source,
               txn_ts
               + CASE WHEN is_fraud AND {_rnd("i", "chargeback")} < 0.7
                      THEN {_offset_ms("i", "review_delay", 2 * MS_PER_DAY, 42 * MS_PER_DAY)}
                      ELSE {_offset_ms("i", "review_delay", MS_PER_HOUR // 2, 72 * MS_PER_HOUR)}
                 END AS reviewed_at
        FROM reviewed
    """

    alerts = f"""
        CREATE TABLE alerts AS
        WITH alerted AS (
            SELECT *
            FROM tx
            ORDER BY {_rnd("i", "alert")}
                     * CASE WHEN is_fraud THEN 0.15 WHEN suspicious THEN 0.5 ELSE 1.0 END,
                     i
            LIMIT {counts["realtime_alerts"]}
        ),
        scored AS (
            SELECT a.*,
                   round(CASE WHEN a.is_fraud THEN 0.55 + 0.45 * {_rnd("a.i", "alert_score")}
                              ELSE 0.1 + 0.75 * {_rnd("a.i", "alert_score")} END, 3)
                       AS risk_score,
                   a.txn_ts + {_offset_ms("a.i", "alert_delay", 300, 120_300)} AS alert_ts
            FROM alerted a
        )
        SELECT i, customer_id, risk_score, alert_ts,
               row_number() OVER (ORDER BY alert_ts, i) AS alert_no,
               CASE WHEN in_burst THEN 'velocity'
                    WHEN amount > 400 THEN 'high_amount'
                    WHEN suspicious THEN 'unusual_context'
                    ELSE 'model_score' END AS alert_type,
               CASE WHEN risk_score >= 0.9 THEN 'critical'
                    WHEN risk_score >= 0.75 THEN 'high'
                    WHEN risk_score >= 0.5 THEN 'medium'
                    ELSE 'low' END AS severity
        FROM scored
    """

    return [
        geo,
        categories,
        ips,
        users,
        cards,
        transactions,
        devices,
        merchants,
        labels,
        alerts,
    ]


def _ts(column: str) -> str:
    """SQL formatting a timestamp as ``YYYY-MM-DD HH:MM:SS.mmm``."""
    return f"strftime({column}, '%Y-%m-%d %H:%M:%S.%g')"


TXN_ID = "printf('TXN%010d', {} + 1)"

# The query that exports each source; every one ends in an ORDER BY so row order is fixed.
EXPORTS = {
    "transactions": f"""
        SELECT {TXN_ID.format("t.i")} AS transaction_id, t.customer_id, t.card_id, t.merchant_id,
               t.device_id, {_ip_address("t.ip_id")} AS ip_address, t.amount, t.channel,
               {_ts("t.txn_ts")} AS txn_ts
        FROM tx t
        ORDER BY t.i
    """,
    "user_profiles": """
        SELECT customer_id, signup_date, home_country, age, account_tier, kyc_verified,
               avg_monthly_spend
        FROM users ORDER BY customer_id
    """,
    "device_fingerprints": f"""
        SELECT device_id, device_type, os, is_emulator, {_ts("first_seen_ts")} AS first_seen_ts
        FROM devices ORDER BY device_id
    """,
    "ip_geolocation": """
        SELECT ip_address, country, latitude, longitude, asn, network_type, is_proxy,
               ip_reputation_score
        FROM ips ORDER BY ip_id
    """,
    "merchant_data": f"""
        SELECT merchant_id, merchant_name, merchant_category, mcc, merchant_country,
               {_ts("onboarded_at")} AS onboarded_at
        FROM merchants ORDER BY merchant_id
    """,
    "card_data": """
        SELECT card_id, customer_id, card_type, card_network, issue_date, expiry_date,
               credit_limit, is_virtual
        FROM cards ORDER BY card_id
    """,
    "fraud_labels": f"""
        SELECT {TXN_ID.format("i")} AS transaction_id, customer_id, merchant_id, is_fraud,
               fraud_type, label_source, {_ts("reviewed_at")} AS reviewed_at
        FROM labels ORDER BY i
    """,
    "realtime_alerts": f"""
        SELECT printf('ALT%09d', alert_no) AS alert_id, {TXN_ID.format("i")} AS transaction_id,
               customer_id, alert_type, severity, risk_score, {_ts("alert_ts")} AS alert_ts
        FROM alerts ORDER BY alert_no
    """,
}


def _sql_path(path: Path) -> str:
    return "'" + str(path).replace("'", "''") + "'"


def _export(con: duckdb.DuckDBPyConnection, name: str, out_dir: Path) -> int:
    """Write one source CSV under a temporary name, then move it into place."""
    final = out_dir / f"{name}.csv"
    tmp = out_dir / f".{name}.csv.{os.getpid()}.tmp"
    try:
        copied = con.execute(f"COPY ({EXPORTS[name]}) TO {_sql_path(tmp)} (HEADER, DELIMITER ',')")
        rows = copied.fetchone()[0]
        os.replace(tmp, final)
    finally:
        tmp.unlink(missing_ok=True)
    return rows


def generate(transactions: int, out_dir: Path) -> dict[str, int]:
    """Write the eight source CSVs for ``transactions`` transactions into ``out_dir``.

    Args:
        transactions: number of transactions (1 to MAX_TRANSACTIONS); the other sources scale
            with it.
        out_dir: folder for the CSVs; created if missing.

    Returns:
        Rows written per source.

    Raises:
        ValueError: ``transactions`` is outside 1..MAX_TRANSACTIONS.
    """
    import duckdb

    if not 1 <= transactions <= MAX_TRANSACTIONS:
        raise ValueError(
            f"transactions must be between 1 and {MAX_TRANSACTIONS:,}, got {transactions:,}"
        )

    out_dir.mkdir(parents=True, exist_ok=True)
    counts = row_counts(transactions)

    con = duckdb.connect()
    try:
        # NOTE: insertion order is kept so each ORDER BY fixes the bytes of the file.
        con.execute("SET preserve_insertion_order = true")
        for statement in _build_statements(counts):
            con.execute(statement)
        written = {name: _export(con, name, out_dir) for name in EXPORTS}
    finally:
        con.close()

    return written


def _transaction_count(text: str) -> int:
    value = int(text.replace("_", ""))
    if not 1 <= value <= MAX_TRANSACTIONS:
        raise argparse.ArgumentTypeError(
            f"must be between 1 and {MAX_TRANSACTIONS:,}, got {value:,}"
        )
    return value


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--transactions",
        type=_transaction_count,
        default=DEFAULT_TRANSACTIONS,
        metavar="N",
        help="number of transactions; the other sources scale with it (default: 10,000)",
    )
    parser.add_argument(
        "--out",
        type=Path,
        default=DEFAULT_OUT_DIR,
        metavar="DIR",
        help="folder for the CSV files (default: data/ beside this script)",
    )
    args = parser.parse_args(argv)

    started = time.perf_counter()
    written = generate(args.transactions, args.out)
    elapsed = time.perf_counter() - started

    for name, rows in written.items():
        sys.stdout.write(f"  {name + '.csv':<26} {rows:>12,} rows\n")
    sys.stdout.write(f"Wrote {len(written)} files to {args.out} in {elapsed:.2f}s\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
