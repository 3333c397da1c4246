"""Augmentation: varied copies of the user turns of a dataset (typos, spelling, casing, structure,
synonyms, EDA-style edits, teacher paraphrases), reproducible by seed.

    chattune augment CONFIG.yaml [augment.copies=3 ...]

`ops` holds the text operations, `run` the stage's entry function; the `augment:` section's schema is
`chattune.config.augment`.
"""
