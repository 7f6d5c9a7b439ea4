"""recsemble on Apache Spark (the optional `spark` extra): data preparation, the protocol's
splits, distributed fits of the members that have one, and metrics for dumped lists.

Modules import pyspark only inside functions, so `import recsemble.spark` works without it;
`session.require_pyspark` says what is missing. Models fitted here are ordinary generators:
their saved artifacts load and serve without Spark.
"""
