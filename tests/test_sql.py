"""Tests for seeknal_dagster.sql: references, executable and canonical text, output columns."""

from __future__ import annotations

import time

import pytest

from seeknal_dagster.errors import SqlError
from seeknal_dagster.sql import (
    NODE_KINDS,
    normalize,
    references,
    split_statements,
    to_duckdb,
)

CARD_VELOCITY = """
-- velocity features per card
WITH base AS (
    SELECT
        t.card_id,
        t.user_id,
        t.amount::DOUBLE AS amount,
        t.event_time,
        m.category AS merchant_category
    FROM source.transactions t
    LEFT JOIN ref('source.merchants') m ON t.merchant_id = m.merchant_id
    WHERE t.status <> 'declined'
)
SELECT
    card_id,
    user_id,
    COUNT(*) OVER (
        PARTITION BY card_id ORDER BY event_time
        RANGE BETWEEN INTERVAL 1 HOUR PRECEDING AND CURRENT ROW
    ) AS txns_last_hour,
    CASE WHEN merchant_category IN ('gambling', 'crypto') THEN 1 ELSE 0 END AS risky_merchant,
    event_time
FROM base
QUALIFY ROW_NUMBER() OVER (PARTITION BY card_id ORDER BY event_time DESC) = 1
"""


# --- references -------------------------------------------------------------------------------


def test_node_kinds_lists_every_seeknal_kind() -> None:
    assert NODE_KINDS[:4] == ("source", "transform", "feature_group", "exposure")
    assert "second_order_aggregation" in NODE_KINDS and len(NODE_KINDS) == 11


def test_references_dotted_and_ref_forms_in_order() -> None:
    assert references(CARD_VELOCITY) == ["source.transactions", "source.merchants"]


def test_references_ref_with_double_quotes_and_spaces() -> None:
    sql = "SELECT * FROM ref( \"source.users\" ) u JOIN ref ( 'transform.velocity' ) v USING (id)"
    assert references(sql) == ["source.users", "transform.velocity"]


def test_references_deduplicates_keeping_first_appearance() -> None:
    sql = """
    SELECT a.user_id FROM transform.clean a
    JOIN source.users u ON u.user_id = a.user_id
    JOIN ref('transform.clean') b ON b.user_id = a.user_id
    """
    assert references(sql) == ["transform.clean", "source.users"]


def test_references_cte_named_like_a_node_is_not_a_node() -> None:
    sql = """
    WITH transactions AS (SELECT * FROM source.transactions WHERE amount > 0),
         card_velocity AS (SELECT card_id, COUNT(*) AS n FROM transactions GROUP BY card_id)
    SELECT * FROM card_velocity JOIN transactions USING (card_id)
    """
    assert references(sql) == ["source.transactions"]


def test_references_inside_subqueries_and_joins() -> None:
    sql = """
    SELECT u.user_id, r.score
    FROM (SELECT user_id FROM source.users WHERE active) u
    LEFT JOIN feature_group.user_risk r ON r.user_id = u.user_id
    WHERE u.user_id IN (SELECT user_id FROM transform.flagged)
      AND EXISTS (SELECT 1 FROM ref('source.blocklist') b WHERE b.user_id = u.user_id)
    """
    assert references(sql) == [
        "source.users",
        "feature_group.user_risk",
        "transform.flagged",
        "source.blocklist",
    ]


def test_references_ignores_string_literals_and_comments() -> None:
    sql = """
    -- built from source.legacy, see ref('source.old')
    SELECT 'source.x' AS origin, t.id /* FROM source.hidden */
    FROM source.transactions t
    WHERE t.note <> 'ref(''source.y'')'
    """
    assert references(sql) == ["source.transactions"]


def test_references_column_qualified_by_a_kind_named_alias_is_not_a_node() -> None:
    sql = "SELECT source.amount, model.score FROM transform.scored model, source.raw source"
    assert references(sql) == ["transform.scored", "source.raw"]


def test_references_unknown_schema_is_not_a_node_but_unknown_ref_kind_is_reported() -> None:
    sql = "SELECT * FROM main.lookup JOIN ref('sorce.users') USING (id)"
    assert references(sql) == ["sorce.users"]


def test_references_reads_of_every_statement_but_not_the_created_table() -> None:
    sql = """
    CREATE TEMP TABLE recent AS SELECT * FROM source.transactions WHERE ts > now() - INTERVAL 1 DAY;
    CREATE TEMP TABLE transform.scratch AS SELECT 1 AS x;
    SELECT r.*, u.country FROM recent r JOIN source.users u USING (user_id)
    """
    assert references(sql) == ["source.transactions", "source.users"]


def test_references_unparseable_sql_falls_back_to_a_token_scan() -> None:
    sql = """
    SELECT t.user_id, source.amount  -- FROM source.commented
    FROM source.transactions t, (SELECT * FROM transform.x) x
    JOIN ref('feature_group.user_risk') r ON r.user_id = t.user_id
    WHERE t.note = 'FROM source.quoted' AND (((
    """
    assert references(sql) == ["source.transactions", "transform.x", "feature_group.user_risk"]


def test_references_of_empty_sql_is_empty() -> None:
    assert references("") == []
    assert references("-- nothing here\n") == []


# --- to_duckdb --------------------------------------------------------------------------------


def test_to_duckdb_replaces_every_ref_form_and_nothing_else() -> None:
    sql = "SELECT * FROM ref('source.a') x JOIN ref( \"source.b\" ) y USING (id) JOIN REF ('c.d')"
    assert to_duckdb(sql) == (
        'SELECT * FROM "source"."a" x JOIN "source"."b" y USING (id) JOIN "c"."d"'
    )


def test_to_duckdb_keeps_duckdb_only_syntax_byte_for_byte() -> None:
    sql = (
        "SELECT * EXCLUDE (raw)\r\nFROM source.t ASOF JOIN ref('source.rates') r\n"
        "  ON t.ccy = r.ccy AND t.ts >= r.ts\n"
        "WINDOW w AS (ORDER BY ts RANGE BETWEEN INTERVAL 1 HOUR PRECEDING AND CURRENT ROW)\n"
        "QUALIFY row_number() OVER (PARTITION BY id ORDER BY ts) = 1;  -- done\n"
    )
    assert to_duckdb(sql) == sql.replace("ref('source.rates')", '"source"."rates"')


def test_to_duckdb_leaves_refs_in_strings_and_comments() -> None:
    sql = (
        "SELECT 'ref(''source.a'')' AS s, \"ref('source.b')\" /* ref('source.c') */\n"
        "-- ref('source.d')\nFROM myref('source.e'), x.ref('source.f')"
    )
    assert to_duckdb(sql) == sql


def test_to_duckdb_output_executes_in_duckdb() -> None:
    duckdb = pytest.importorskip("duckdb")
    con = duckdb.connect()
    con.execute("CREATE SCHEMA source")
    con.execute(
        "CREATE VIEW source.transactions AS SELECT * FROM (VALUES "
        "(1, 100, 10, 5.0, 'ok', TIMESTAMP '2024-01-01 10:00:00'), "
        "(1, 100, 10, 7.5, 'ok', TIMESTAMP '2024-01-01 10:30:00'), "
        "(2, 200, 20, 1.0, 'declined', TIMESTAMP '2024-01-01 11:00:00')) "
        "AS v(card_id, user_id, merchant_id, amount, status, event_time)"
    )
    con.execute(
        "CREATE VIEW source.merchants AS SELECT * FROM (VALUES (10, 'gambling'), (20, 'food')) "
        "AS v(merchant_id, category)"
    )

    rows = con.execute(to_duckdb(CARD_VELOCITY)).fetchall()

    assert [(card, txns, risky) for card, _, txns, risky, _ in rows] == [(1, 2, 1)]


def test_to_duckdb_multi_statement_output_executes_in_duckdb() -> None:
    duckdb = pytest.importorskip("duckdb")
    con = duckdb.connect()
    con.execute("CREATE SCHEMA source")
    con.execute("CREATE VIEW source.t AS SELECT range AS id, range % 3 AS grp FROM range(9)")
    sql = """
    CREATE TEMP TABLE grouped AS
        SELECT grp, COUNT(*) AS n FROM ref("source.t") GROUP BY grp; -- ; in a comment
    SELECT grp, n, ';' AS marker FROM grouped ORDER BY 1;
    """
    statements = split_statements(to_duckdb(sql))

    for statement in statements[:-1]:
        con.execute(statement)
    rows = con.execute(f"SELECT * FROM ({statements[-1]})").fetchall()

    assert rows == [(0, 3, ";"), (1, 3, ";"), (2, 3, ";")]


# --- split_statements -------------------------------------------------------------------------


def test_split_statements_ignores_semicolons_in_strings_identifiers_and_comments() -> None:
    sql = (
        "CREATE TEMP TABLE x AS SELECT 'a;b' AS \"c;d\"; /* ; */\n"
        "-- ;\nSELECT $$e;f$$ AS g, E'h\\';i' AS j FROM x;\n;\n"
    )
    assert split_statements(sql) == [
        "CREATE TEMP TABLE x AS SELECT 'a;b' AS \"c;d\"",
        "SELECT $$e;f$$ AS g, E'h\\';i' AS j FROM x",
    ]


def test_split_statements_trims_surrounding_comments_so_the_last_can_be_wrapped() -> None:
    sql = "-- header\nSELECT 1 AS a -- trailing note\n"
    assert split_statements(sql) == ["SELECT 1 AS a"]


def test_split_statements_keeps_comments_inside_a_statement() -> None:
    sql = "SELECT a, -- the key\n  b\nFROM t"
    assert split_statements(sql) == [sql]


def test_split_statements_without_any_statement_raises() -> None:
    with pytest.raises(SqlError, match="holds no statement"):
        split_statements(" ;\n -- only a comment\n ; /* and another */")


# --- normalize --------------------------------------------------------------------------------


def test_normalize_ignores_whitespace_comments_keyword_case_crlf_and_semicolons() -> None:
    reformatted = (
        "/* card velocity */ with BASE as (select T.card_id, t.user_id, cast(t.amount as double)"
        " as amount, t.event_time,\r\n m.category merchant_category from SOURCE.transactions as t"
        " left join source.merchants as m on t.merchant_id=m.merchant_id where t.status != "
        "'declined') select card_id, user_id, count(*) over (partition by card_id order by "
        "event_time range between interval 1 hour preceding and current row) as txns_last_hour,"
        " case when merchant_category in ('gambling','crypto') then 1 else 0 end as "
        'risky_merchant, "event_time" from base qualify row_number() over (partition by card_id'
        " order by event_time desc) = 1;;\r\n"
    )
    assert normalize(reformatted) == normalize(CARD_VELOCITY)


@pytest.mark.parametrize(
    "change",
    [
        ("t.status <> 'declined'", "t.status <> 'approved'"),
        ("t.status <> 'declined'", "t.status <> 'declined' AND t.amount > 0"),
        ("    user_id,\n    COUNT", "    user_id,\n    merchant_category,\n    COUNT"),
        ("AS txns_last_hour", "AS txn_count_last_hour"),
        ("INTERVAL 1 HOUR", "INTERVAL 2 HOUR"),
        ("event_time DESC", "event_time ASC"),
        ("LEFT JOIN", "JOIN"),
        ("ref('source.merchants')", "ref('source.merchants_v2')"),
    ],
)
def test_normalize_changes_with_logic(change: tuple[str, str]) -> None:
    old, new = change
    assert old in CARD_VELOCITY
    assert normalize(CARD_VELOCITY.replace(old, new)) != normalize(CARD_VELOCITY)


def test_normalize_alias_case_is_a_change_but_identifier_quoting_is_not() -> None:
    sql = "SELECT amount AS total FROM source.t"
    assert normalize('SELECT "amount" AS "total" FROM "source"."t"') == normalize(sql)
    assert normalize("SELECT amount AS Total FROM source.t") != normalize(sql)


def test_normalize_ref_and_dotted_forms_are_the_same() -> None:
    dotted = "SELECT * FROM source.users u"
    assert normalize("SELECT * FROM ref('source.users') AS u") == normalize(dotted)


def test_normalize_unparseable_sql_strips_comments_and_collapses_whitespace() -> None:
    sql = "SELECT  a,\r\n\tb -- note\nFROM t WHERE s = 'Keep  THIS' /* c */ AND ((( ;\n"
    assert normalize(sql) == "SELECT a, b FROM t WHERE s = 'Keep  THIS' AND ((("
    assert normalize(sql.replace("SELECT", "select")) != normalize(sql)


def test_normalize_never_raises_on_garbage() -> None:
    for text in ["", ";", "'unterminated", "/* open", "SELECT (", "\x00\x01", "$$"]:
        assert isinstance(normalize(text), str)


def test_normalize_500_queries_well_under_a_second_each_batch() -> None:
    queries = [CARD_VELOCITY.replace("'declined'", f"'declined_{i}'") for i in range(500)]

    started = time.perf_counter()
    results = {normalize(query) for query in queries}
    elapsed = time.perf_counter() - started

    assert len(results) == 500
    assert elapsed < 2.0, f"normalize took {elapsed:.2f}s for 500 queries"
