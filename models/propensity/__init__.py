"""Purchase-propensity models: LightGBM / XGBoost boosters, calibration, artifacts, predictor."""
