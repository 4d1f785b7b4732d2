"""Evaluation metrics: ranking (recommenders) and classification (propensity)."""
