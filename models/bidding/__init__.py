"""Real-time bidding (issue 15): market-price model, strategies, RLB tables, replay, iPinYou adapters.

Pure code: no Ray, no Redis, no argparse. Budget state in Redis lives in ``store.budget``.
"""
