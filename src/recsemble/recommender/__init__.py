"""The parts of the serving Recommender (recsemble.pipeline): live items and users, cached
candidate pools and cold-start lists, re-ranking stages, explanations."""
