"""Augmentation: varied copies of the user turns of a dataset (typos, spelling, casing, structure,
synonyms, EDA-style edits, teacher paraphrases), reproducible by seed.

    chattune augment CONFIG.yaml [augment.copies=3 ...]

`config` holds the `augment:` section, `ops` the text operations, `run` the stage's entry function.
Nothing is imported here: chattune.config imports `augment.config` at start-up and must stay light.
"""
