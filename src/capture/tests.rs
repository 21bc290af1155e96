//! Integration of the capture layers: corpora, hand-built frames, writer round trips.
