"""Readable side of the synthetic data: ids, labels, item titles and descriptions as frames.

Item text draws on pseudo-word vocabularies (general words, then words of each category, then
words of each latent cluster), so that it carries the same signal as the simulated tastes.
`recsemble.data.synthetic` simulates the entities and events; this module only renders them.
"""

from __future__ import annotations

from typing import Protocol

import numpy as np
import numpy.typing as npt
import polars as pl
import pyarrow as pa

I64 = npt.NDArray[np.int64]

# User labels with the share of users drawn for each, then item labels and vocabulary.
COUNTRIES = ("US", "GB", "DE", "FR", "ES", "BR", "IN", "JP")
COUNTRY_SHARE = (0.3, 0.1, 0.12, 0.1, 0.08, 0.1, 0.12, 0.08)
AGE_GROUPS = ("18-24", "25-34", "35-44", "45-54", "55+")
AGE_SHARE = (0.18, 0.3, 0.24, 0.16, 0.12)
CATEGORY_NAMES = (
    "electronics", "books", "fashion", "home", "garden", "sports", "toys", "beauty", "grocery",
    "music", "movies", "games", "outdoors", "pets", "office", "automotive", "health", "jewelry",
    "kitchen", "travel",
)  # fmt: skip
GENERAL_WORDS = (
    "new", "classic", "premium", "compact", "durable", "light", "essential", "everyday", "modern",
    "original", "smart", "soft", "quality", "great", "value", "pack", "set", "edition", "style",
    "design", "easy", "perfect", "gift", "favourite", "best", "popular", "fresh", "simple",
    "with", "and", "for", "the", "of", "a", "in", "your", "all", "made", "use", "home",
)  # fmt: skip
SYLLABLES = tuple(c + v for c in "bdfgklmnprstvz" for v in "aeiou")
CATEGORY_WORDS = 30  # vocabulary of each category
CLUSTER_WORDS = 8  # extra words of each latent cluster, so text separates clusters too


class TextConfig(Protocol):
    """The `SyntheticConfig` settings read here (structural, so this module imports no config)."""

    @property
    def n_users(self) -> int: ...
    @property
    def n_items(self) -> int: ...
    @property
    def n_categories(self) -> int: ...
    @property
    def clusters_per_category(self) -> int: ...
    @property
    def n_clusters(self) -> int: ...
    @property
    def secondary_category_prob(self) -> float: ...
    @property
    def text_length(self) -> tuple[int, int]: ...


def id_series(prefix: str, n: int) -> pl.Series:
    """prefix + zero-padded number; users and items get different prefixes."""
    width = max(6, len(str(n - 1)))
    digits = pl.int_range(n).cast(pl.String).str.zfill(width)
    return pl.select(pl.concat_str(pl.lit(prefix), digits)).to_series()


def vocabulary(cfg: TextConfig, rng: np.random.Generator) -> pl.Series:
    """General words, then CATEGORY_WORDS per category, then CLUSTER_WORDS per cluster."""
    need = cfg.n_categories * CATEGORY_WORDS + cfg.n_clusters * CLUSTER_WORDS
    syl, n_syl = np.array(SYLLABLES), len(SYLLABLES)
    code = rng.choice(n_syl**3, need, replace=False)  # distinct 3-syllable pseudo-words
    head = np.char.add(syl[code // n_syl**2], syl[code // n_syl % n_syl])
    words = np.char.add(head, syl[code % n_syl]).tolist()
    return pl.Series("word", [*GENERAL_WORDS, *words], dtype=pl.String)


def descriptions(cfg: TextConfig, cluster: I64, rng: np.random.Generator) -> pl.DataFrame:
    """Title and text drawn from the item's category and cluster vocabularies and general words."""
    n, n_gen, (lo, hi) = cluster.size, len(GENERAL_WORDS), cfg.text_length
    vocab = vocabulary(cfg, rng)
    cat_base = n_gen + cluster // cfg.clusters_per_category * CATEGORY_WORDS
    cl_base = n_gen + cfg.n_categories * CATEGORY_WORDS + cluster * CLUSTER_WORDS
    source = rng.random((n, hi))
    word = np.where(
        source < 0.35,
        cat_base[:, None] + rng.integers(0, CATEGORY_WORDS, (n, hi)),
        np.where(
            source < 0.55,
            cl_base[:, None] + rng.integers(0, CLUSTER_WORDS, (n, hi)),
            rng.integers(0, n_gen, (n, hi)),
        ),
    )
    length = rng.integers(lo, hi + 1, n)
    offsets = np.r_[0, np.cumsum(length)].astype(np.int32)
    flat = vocab.gather(word[np.arange(hi)[None, :] < length[:, None]]).to_arrow()
    text = pl.from_arrow(pa.ListArray.from_arrays(offsets, flat))
    title_head = vocab.gather(cl_base + rng.integers(0, CLUSTER_WORDS, n)).str.to_titlecase()
    title = title_head + " " + vocab.gather(cat_base + rng.integers(0, CATEGORY_WORDS, n))
    return pl.DataFrame({"title": title, "text": text}).with_columns(pl.col("text").list.join(" "))


def item_frame(
    cfg: TextConfig, cluster: I64, created: I64, rng: np.random.Generator
) -> pl.DataFrame:
    """item_id, title, text, categories (one or two names) and created_at of every item."""
    n, n_cat = cfg.n_items, cfg.n_categories
    names = pl.Series([*CATEGORY_NAMES[:n_cat], *(f"category{j}" for j in range(20, n_cat))])
    category = cluster // cfg.clusters_per_category
    second = (category + rng.integers(1, max(n_cat, 2), n)) % n_cat
    has_second = (rng.random(n) < cfg.secondary_category_prob) & (second != category)
    frame = pl.DataFrame(
        {
            "item_id": id_series("i", n),
            "cat": names.gather(category),
            "cat2": names.gather(second),
            "n_cats": pl.Series(1 + has_second, dtype=pl.Int64),
            "created_at": pl.Series(created, dtype=pl.Int64),
        }
    ).hstack(descriptions(cfg, cluster, rng))
    return frame.select(
        "item_id",
        pl.concat_str("title", "cat", separator=" ").alias("title"),
        "text",
        pl.concat_list("cat", "cat2").list.head(pl.col("n_cats")).alias("categories"),
        "created_at",
    )


def user_frame(cfg: TextConfig, country: I64, age: I64, signup: I64) -> pl.DataFrame:
    """user_id, country, age_group and signup_at of every user."""
    return pl.DataFrame(
        {
            "user_id": id_series("u", cfg.n_users),
            "country": pl.Series(COUNTRIES).gather(country),
            "age_group": pl.Series(AGE_GROUPS).gather(age),
            "signup_at": pl.Series(signup, dtype=pl.Int64),
        }
    )
