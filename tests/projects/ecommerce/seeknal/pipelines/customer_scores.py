"""A Seeknal Python pipeline: reported as not supported yet, never run."""

from seeknal.pipeline import transform


@transform(name="customer_scores", inputs=["transform.orders_current"])
def customer_scores(ctx):
    orders = ctx.ref("transform.orders_current")
    return ctx.duckdb.sql("SELECT customer_id, SUM(amount) AS score FROM orders GROUP BY 1").df()
