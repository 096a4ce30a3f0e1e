"""SQuAD v1.1 for BERT question answering, shared by the harness and the compression pipeline.

- :mod:`squad.data`: where the dev set and the WordPiece vocabulary come from (data directory,
  checked downloads, writing the built-in sample);
- :mod:`squad.sample_corpus`: the built-in sample's articles and its WordPiece vocab;
- :mod:`squad.examples`: reading and validating a SQuAD v1.1 file into questions;
- :mod:`squad.features`: cutting the questions into MLPerf BERT's 384/128/64 windows (cached);
- :mod:`squad.scoring`: post-processing logits into answer texts and the official F1 / exact match;
- :mod:`squad.errors`: the one-line, user-facing error types both command lines print.

Features and scores are identical to the MLPerf BERT reference on the official dev set (tests prove it).
"""
