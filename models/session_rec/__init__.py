"""Session-based recommenders: baselines, GRU4Rec, SASRec, their artifacts and predictor."""
