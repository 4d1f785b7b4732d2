"""Feature code shared by the batch feature job and online scoring, one module per concept.

- ``sessionize``: events sorted once by (session, time), stable string hashes, day strings,
  gap sessionization;
- ``session``: session features (the same code for batch and one live session);
- ``user``: point-in-time user features;
- ``item``: item features and popularity (the one place they are computed);
- ``labels``: purchase-within-N-days labels;
- ``sequences``: browsed-item sequences and session summaries.
"""
