"""Tests for seeknal_dagster.sql: references, executable and canonical text, output columns."""

from __future__ import annotations

import pytest

from seeknal_dagster.errors import SqlError
from seeknal_dagster.sql import (
    NODE_KINDS,
    columns_read,
    normalize,
    output_columns,
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

# A ~40-line feature query, the size the planning budget is measured on.
VELOCITY_FEATURES = """
-- velocity features per card
WITH base AS (
    SELECT
        t.card_id,
        t.user_id,
        t.amount::DOUBLE AS amount,
        t.merchant_id,
        t.event_time,
        m.category AS merchant_category
    FROM source.transactions t
    LEFT JOIN ref('source.merchants') m ON t.merchant_id = m.merchant_id
    WHERE t.status <> 'declined'
),
windowed AS (
    SELECT
        card_id,
        user_id,
        event_time,
        COUNT(*) OVER (
            PARTITION BY card_id ORDER BY event_time
            RANGE BETWEEN INTERVAL 1 HOUR PRECEDING AND CURRENT ROW
        ) AS txns_last_hour,
        SUM(amount) OVER (
            PARTITION BY card_id ORDER BY event_time
            RANGE BETWEEN INTERVAL '24 hours' PRECEDING AND CURRENT ROW
        ) AS amount_last_day,
        AVG(amount) OVER (PARTITION BY user_id) AS avg_amount_user,
        CASE WHEN merchant_category IN ('gambling', 'crypto') THEN 1 ELSE 0 END AS risky_merchant
    FROM base
)
SELECT
    card_id,
    user_id,
    MAX(txns_last_hour) AS max_txns_per_hour,
    SUM(amount_last_day) / NULLIF(COUNT(*), 0) AS mean_daily_amount,
    MAX(risky_merchant) AS has_risky_merchant,
    MAX(event_time) AS event_time
FROM windowed
GROUP BY card_id, user_id
QUALIFY ROW_NUMBER() OVER (PARTITION BY card_id ORDER BY MAX(event_time) DESC) = 1
ORDER BY 1
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


def test_references_too_deeply_nested_for_the_parser_falls_back() -> None:
    sql = (
        "SELECT " + "(" * 600 + "1" + ")" * 600 + " FROM transform.x JOIN ref('source.y') USING (k)"
    )
    assert references(sql) == ["transform.x", "source.y"]


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
    deep = "SELECT " + "(" * 600 + "1" + ")" * 600
    for text in ["", ";", "'unterminated", "/* open", "SELECT (", "\x00\x01", "$$", deep]:
        assert isinstance(normalize(text), str)


def test_normalize_distinguishes_500_variants_of_a_40_line_query() -> None:
    # Speed is measured by benchmarks/run_bench.py, not asserted here (shared, noisy machines).
    assert len(VELOCITY_FEATURES.splitlines()) >= 40
    queries = [VELOCITY_FEATURES.replace("'declined'", f"'declined_{i}'") for i in range(500)]

    results = {normalize(query) for query in queries}

    assert len(results) == 500


# --- output_columns ---------------------------------------------------------------------------

TRANSACTIONS = [
    ("card_id", "BIGINT"),
    ("user_id", "BIGINT"),
    ("merchant_id", "BIGINT"),
    ("amount", "DECIMAL(10,2)"),
    ("status", "VARCHAR"),
    ("event_time", "TIMESTAMP"),
]
MERCHANTS = [("merchant_id", "BIGINT"), ("category", "VARCHAR")]
INPUTS = {"source.transactions": TRANSACTIONS, "source.merchants": MERCHANTS}


def test_output_columns_star_follows_an_input_that_gained_a_column() -> None:
    sql = "SELECT * FROM source.transactions WHERE status = 'ok'"
    grown = {"source.transactions": [*TRANSACTIONS, ("ip_reputation_score", "DOUBLE")]}

    before = output_columns(sql, INPUTS)
    after = output_columns(sql, grown)

    assert before == TRANSACTIONS
    assert after == [*TRANSACTIONS, ("ip_reputation_score", "DOUBLE")]


def test_output_columns_alias_rename_changes_the_name_and_keeps_its_case() -> None:
    sql = "SELECT card_id, amount AS txn_amount FROM source.transactions"
    renamed = sql.replace("txn_amount", "TxnAmount")

    assert output_columns(sql, INPUTS) == [("card_id", "BIGINT"), ("txn_amount", "DECIMAL(10,2)")]
    assert output_columns(renamed, INPUTS)[1] == ("TxnAmount", "DECIMAL(10,2)")


def test_output_columns_cast_and_double_colon_retype() -> None:
    sql = (
        "SELECT CAST(amount AS DOUBLE) AS amount, user_id::VARCHAR AS user_key "
        "FROM source.transactions"
    )
    assert output_columns(sql, INPUTS) == [("amount", "DOUBLE"), ("user_key", "VARCHAR")]


def test_output_columns_column_names_come_from_the_input_spelling() -> None:
    inputs = {"source.users": [("UserId", "BIGINT"), ("Country", "VARCHAR")]}
    sql = "SELECT userid, u.COUNTRY FROM ref('source.users') u"
    assert output_columns(sql, inputs) == [("UserId", "BIGINT"), ("Country", "VARCHAR")]


def test_output_columns_group_by_with_count_sum_avg() -> None:
    sql = """
    SELECT user_id, COUNT(*) AS txn_count, SUM(amount) AS total_amount,
           AVG(amount) AS avg_amount, COUNT(DISTINCT merchant_id) AS merchants,
           SUM(merchant_id) AS id_sum, MAX(event_time) AS last_seen
    FROM source.transactions
    GROUP BY user_id
    HAVING COUNT(*) > 1
    """
    assert output_columns(sql, INPUTS) == [
        ("user_id", "BIGINT"),
        ("txn_count", "BIGINT"),
        ("total_amount", "DECIMAL(38,2)"),
        ("avg_amount", "DOUBLE"),
        ("merchants", "BIGINT"),
        ("id_sum", "HUGEINT"),
        ("last_seen", "TIMESTAMP"),
    ]


def test_output_columns_positional_order_by_and_group_by() -> None:
    sql = "SELECT status, COUNT(*) AS n FROM source.transactions GROUP BY 1 ORDER BY 2 DESC"
    assert output_columns(sql, INPUTS) == [("status", "VARCHAR"), ("n", "BIGINT")]


def test_output_columns_window_with_range_interval() -> None:
    sql = """
    SELECT card_id, event_time,
           COUNT(*) OVER w AS txns_last_hour,
           SUM(amount::DOUBLE) OVER (
               PARTITION BY card_id ORDER BY event_time
               RANGE BETWEEN INTERVAL '24 hours' PRECEDING AND CURRENT ROW
           ) AS amount_last_day
    FROM source.transactions
    WINDOW w AS (
        PARTITION BY card_id ORDER BY event_time
        RANGE BETWEEN INTERVAL 1 HOUR PRECEDING AND CURRENT ROW
    )
    """
    assert output_columns(sql, INPUTS) == [
        ("card_id", "BIGINT"),
        ("event_time", "TIMESTAMP"),
        ("txns_last_hour", "BIGINT"),
        ("amount_last_day", "DOUBLE"),
    ]


def test_output_columns_qualify_row_number_over_a_cte_with_a_join() -> None:
    assert output_columns(CARD_VELOCITY, INPUTS) == [
        ("card_id", "BIGINT"),
        ("user_id", "BIGINT"),
        ("txns_last_hour", "BIGINT"),
        ("risky_merchant", "INTEGER"),
        ("event_time", "TIMESTAMP"),
    ]


def test_output_columns_star_exclude_replace_and_qualified_star() -> None:
    inputs = {"source.merchants": MERCHANTS, "source.transactions": TRANSACTIONS}
    excluded = "SELECT * EXCLUDE (status, amount) FROM source.transactions"
    replaced = "SELECT * REPLACE (upper(category) AS category) FROM source.merchants"
    qualified = (
        "SELECT m.*, t.amount FROM source.transactions t "
        "JOIN source.merchants m USING (merchant_id)"
    )

    assert [name for name, _ in output_columns(excluded, inputs)] == [
        "card_id",
        "user_id",
        "merchant_id",
        "event_time",
    ]
    assert output_columns(replaced, inputs) == MERCHANTS
    assert output_columns(qualified, inputs) == [*MERCHANTS, ("amount", "DECIMAL(10,2)")]


def test_output_columns_join_using_lists_the_key_once() -> None:
    sql = "SELECT * FROM source.transactions JOIN ref('source.merchants') USING (merchant_id)"
    assert output_columns(sql, INPUTS) == [*TRANSACTIONS, ("category", "VARCHAR")]


def test_output_columns_union_takes_names_from_the_first_branch() -> None:
    sql = """
    SELECT user_id AS entity_id, amount::DOUBLE AS value FROM source.transactions
    UNION ALL
    SELECT merchant_id, 0.0 FROM source.merchants
    """
    assert output_columns(sql, INPUTS) == [("entity_id", "BIGINT"), ("value", "DOUBLE")]


def test_output_columns_subquery_with_column_list_and_earlier_temp_table() -> None:
    sql = """
    CREATE TEMP TABLE ok AS SELECT card_id, amount FROM source.transactions WHERE status = 'ok';
    SELECT s.* FROM (SELECT card_id, SUM(amount) FROM ok GROUP BY card_id) AS s(CardId, Total)
    """
    assert output_columns(sql, INPUTS) == [("CardId", "BIGINT"), ("Total", "DECIMAL(38,2)")]


def test_output_columns_decimal_mixed_with_double_is_double_as_in_duckdb() -> None:
    sql = """
    SELECT COALESCE(amount::DOUBLE, 0.0) AS amount, 1.5 AS factor FROM source.transactions
    UNION ALL
    SELECT 2.25, 0.5 FROM source.merchants
    """
    assert output_columns(sql, INPUTS) == [("amount", "DOUBLE"), ("factor", "DECIMAL(2,1)")]


def test_output_columns_decimal_arithmetic_precision_is_left_unknown() -> None:
    sql = "SELECT amount * 2 AS doubled, amount + amount AS twice FROM source.transactions"
    assert output_columns(sql, INPUTS) == [("doubled", None), ("twice", None)]


def test_output_columns_unknown_types_are_none() -> None:
    inputs = {"source.raw": [("id", "BIGINT"), ("payload", None)]}
    sql = "SELECT id, payload, my_macro(id) AS custom FROM source.raw"
    assert output_columns(sql, inputs) == [("id", "BIGINT"), ("payload", None), ("custom", None)]


def test_output_columns_table_missing_from_inputs_raises_naming_it() -> None:
    sql = "SELECT * FROM source.transactions t JOIN source.users u USING (user_id)"
    with pytest.raises(SqlError, match=r"source\.users, which is not among the node's inputs"):
        output_columns(sql, INPUTS)


def test_output_columns_unknown_column_raises_naming_it() -> None:
    with pytest.raises(SqlError, match="'max_txns_per_hour' could not be resolved"):
        output_columns("SELECT max_txns_per_hour FROM source.transactions", INPUTS)


def test_output_columns_last_statement_not_a_query_raises() -> None:
    sql = "CREATE TABLE x AS SELECT 1 AS a; INSERT INTO x SELECT 2"
    with pytest.raises(SqlError, match="last statement must be a query"):
        output_columns(sql, INPUTS)


def test_output_columns_unparseable_and_table_functions_raise() -> None:
    with pytest.raises(SqlError, match="cannot be parsed"):
        output_columns("SELECT FROM WHERE (", INPUTS)
    with pytest.raises(SqlError, match="READ_PARQUET"):
        output_columns("SELECT * FROM read_parquet('data/x.parquet')", INPUTS)


def test_output_columns_struct_star_and_columns_expression_are_not_supported_yet() -> None:
    inputs = {"source.events": [("id", "BIGINT"), ("payload", "STRUCT(a INTEGER, b VARCHAR)")]}
    for sql in [
        "SELECT id, payload.* FROM source.events",
        "SELECT COLUMNS('p.*') FROM source.events",
    ]:
        with pytest.raises(SqlError, match="not supported yet"):
            output_columns(sql, inputs)


def test_output_columns_match_duckdb_describe() -> None:
    duckdb = pytest.importorskip("duckdb")
    con = duckdb.connect()
    con.execute("CREATE SCHEMA source")
    for node_id, columns in INPUTS.items():
        body = ", ".join(f"{name} {kind}" for name, kind in columns)
        con.execute(f"CREATE TABLE {node_id} ({body})")

    described = con.execute(f"DESCRIBE {to_duckdb(CARD_VELOCITY)}").fetchall()

    assert output_columns(CARD_VELOCITY, INPUTS) == [(row[0], row[1]) for row in described]


# --- columns_read -----------------------------------------------------------------------------


def test_columns_read_counts_a_where_only_column() -> None:
    sql = "SELECT card_id FROM source.transactions WHERE status <> 'declined'"
    assert columns_read(sql, INPUTS) == {"source.transactions": {"card_id", "status"}}


def test_columns_read_star_reads_every_column_of_its_input() -> None:
    sql = (
        "SELECT t.*, m.category FROM source.transactions t "
        "JOIN source.merchants m USING (merchant_id)"
    )
    assert columns_read(sql, INPUTS) == {
        "source.transactions": {name for name, _ in TRANSACTIONS},
        "source.merchants": {"merchant_id", "category"},
    }


def test_columns_read_every_clause_through_ctes() -> None:
    assert columns_read(CARD_VELOCITY, INPUTS) == {
        "source.transactions": {
            "card_id",
            "user_id",
            "amount",
            "event_time",
            "merchant_id",
            "status",
        },
        "source.merchants": {"category", "merchant_id"},
    }


def test_columns_read_window_qualify_and_having_columns() -> None:
    sql = """
    SELECT card_id, COUNT(*) AS n
    FROM ref('source.transactions')
    GROUP BY card_id, user_id
    HAVING MAX(amount) > 10
    QUALIFY ROW_NUMBER() OVER (PARTITION BY user_id ORDER BY MAX(event_time)) = 1
    """
    assert columns_read(sql, INPUTS) == {
        "source.transactions": {"card_id", "user_id", "amount", "event_time"}
    }


def test_columns_read_count_star_reads_the_table_but_no_column() -> None:
    assert columns_read("SELECT COUNT(*) AS n FROM source.merchants", INPUTS) == {
        "source.merchants": set()
    }


def test_columns_read_spells_columns_as_the_input_declares_them() -> None:
    inputs = {"transform.card_velocity": [("Card_Id", "BIGINT"), ("Max_Txns", "BIGINT")]}
    sql = "SELECT card_id FROM transform.card_velocity WHERE MAX_TXNS > 3"
    assert columns_read(sql, inputs) == {"transform.card_velocity": {"Card_Id", "Max_Txns"}}


def test_columns_read_of_a_removed_column_raises_naming_it() -> None:
    inputs = {"transform.card_velocity": [("card_id", "BIGINT")]}
    sql = "SELECT card_id, max_txns_per_hour FROM transform.card_velocity"
    with pytest.raises(SqlError, match="max_txns_per_hour"):
        columns_read(sql, inputs)
