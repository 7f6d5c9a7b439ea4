"""A Spark session for recsemble: local mode by default, quiet, small and without the web UI.

PySpark is an optional extra (`pip install "recsemble[spark]"`) and needs a Java runtime (17 or
later). Everything under `recsemble.spark` imports pyspark lazily, through `require_pyspark`,
so that a missing extra or Java is one clear ConfigError instead of an ImportError or a JVM
stack trace; artifacts trained on Spark load and serve without either.
"""

from __future__ import annotations

import importlib
import os
import shutil
import sys
import tempfile
from collections.abc import Mapping
from types import ModuleType
from typing import TYPE_CHECKING

from recsemble.errors import ConfigError

if TYPE_CHECKING:
    from pyspark.sql import SparkSession

#: Settings for one machine: few shuffle partitions (the default 200 costs seconds per stage on
#: small data), no UI or progress bar, Arrow for every transfer to and from the driver.
LOCAL_SETTINGS: dict[str, str] = {
    "spark.ui.enabled": "false",
    "spark.ui.showConsoleProgress": "false",
    "spark.sql.shuffle.partitions": "4",  # local[n]: n (one task per core), see _local_cores
    "spark.default.parallelism": "4",
    "spark.sql.execution.arrow.pyspark.enabled": "true",
    "spark.sql.session.timeZone": "UTC",
    # Ids are compared as strings everywhere (the protocol's order): never collated.
    "spark.sql.ansi.enabled": "false",
    "spark.driver.host": "127.0.0.1",
    "spark.driver.bindAddress": "127.0.0.1",
    # A deeper thread stack: ALS's iterations build long lineages that overflow the default.
    # (The JIT keeps its optimising tier: without it ALS ran 5x slower, for 1 s less start.)
    "spark.driver.extraJavaOptions": "-XX:+UseSerialGC -Xss16m",
}


#: Log4j 2 settings for the driver: warnings and errors only, without the start-up noise
#: (Spark's "default log4j profile" banner, Hadoop's missing native library, netlib's BLAS
#: probing). Written to a temporary file at session start; a user's own configuration
#: (spark.driver.extraJavaOptions with -Dlog4j2.configurationFile) takes precedence.
LOG4J2 = """\
rootLogger.level = warn
rootLogger.appenderRef.stderr.ref = stderr
appender.stderr.type = Console
appender.stderr.name = stderr
appender.stderr.target = SYSTEM_ERR
appender.stderr.layout.type = PatternLayout
appender.stderr.layout.pattern = %d{HH:mm:ss} %p %c{1}: %m%n
logger.native.name = org.apache.hadoop.util.NativeCodeLoader
logger.native.level = error
logger.blas.name = dev.ludovic.netlib
logger.blas.level = error
"""


def _quiet_logging(settings: Mapping[str, str]) -> dict[str, str]:
    """spark.driver.extraJavaOptions with the LOG4J2 file, unless one is configured already."""
    options = settings.get("spark.driver.extraJavaOptions", "")
    if "log4j2.configurationFile" in options:
        return {}
    handle, path = tempfile.mkstemp(prefix="recsemble-log4j2-", suffix=".properties")
    with os.fdopen(handle, "w") as out:
        out.write(LOG4J2)
    return {"spark.driver.extraJavaOptions": f"{options} -Dlog4j2.configurationFile=file:{path}"}


def require_pyspark() -> ModuleType:
    """The pyspark module, or a ConfigError saying how to install what is missing."""
    try:
        module = importlib.import_module("pyspark")
    except ImportError:
        raise ConfigError(
            "--engine spark needs PySpark: pip install 'recsemble[spark]' (and a Java 17+ runtime)"
        ) from None
    if module is None:  # sys.modules["pyspark"] = None blocks it on purpose
        raise ConfigError("--engine spark needs PySpark, which is blocked in this process")
    if not _java_available():
        raise ConfigError(
            "--engine spark needs a Java runtime (17 or later): none on PATH and JAVA_HOME is "
            "unset (Debian: apt-get install openjdk-17-jre-headless)"
        )
    return module


def _java_available() -> bool:
    home = os.environ.get("JAVA_HOME")
    if home and os.path.isfile(os.path.join(home, "bin", "java")):
        return True
    return shutil.which("java") is not None


def spark_session(
    master: str = "local[2]",
    *,
    driver_memory: str = "1g",
    app_name: str = "recsemble",
    settings: Mapping[str, str] | None = None,
) -> SparkSession:
    """The active session, or a new one on `master` with LOCAL_SETTINGS (plus `settings`).

    A session already running in this process is returned as it is (Spark allows one per JVM);
    its settings are left alone.
    """
    require_pyspark()
    from pyspark.sql import SparkSession

    active = SparkSession.getActiveSession()
    if active is not None:
        return active
    builder = SparkSession.builder.master(master).appName(app_name)
    parts = _local_cores(master)
    sized = {"spark.sql.shuffle.partitions": parts, "spark.default.parallelism": parts}
    conf = {**LOCAL_SETTINGS, **sized, "spark.driver.memory": driver_memory, **(settings or {})}
    conf.update(_quiet_logging(conf))
    for key, value in conf.items():
        builder = builder.config(key, value)
    os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")  # no slow reverse lookup of the host
    if master.startswith("local"):  # Python workers (batch scoring) run this interpreter,
        os.environ.setdefault("PYSPARK_PYTHON", sys.executable)  # whose packages they import
    try:
        session = builder.getOrCreate()
    except Exception as exc:  # the JVM failed to start: say so without its stack trace
        raise ConfigError(f"could not start Spark on {master}: {exc}".splitlines()[0]) from exc
    session.sparkContext.setLogLevel("WARN")
    # Iterative jobs (ALS) checkpoint every few iterations to cut their lineage: they need
    # a checkpoint folder, a temporary one unless the caller set spark.checkpoint.dir.
    if session.sparkContext.getCheckpointDir() is None:
        session.sparkContext.setCheckpointDir(tempfile.mkdtemp(prefix="recsemble-spark-"))
    return session


def _local_cores(master: str) -> str:
    """Partitions for a local master: its core count (local[2] -> "2"); else the default 4."""
    inside = master.removeprefix("local[").removesuffix("]")
    if master.startswith("local[") and inside.isdigit():
        return inside
    return LOCAL_SETTINGS["spark.sql.shuffle.partitions"]
