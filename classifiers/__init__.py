"""Prompt-complexity classifiers and answer-acceptance models (scikit-learn).

Training, evaluation and the fast scorer arrive with the classifier issue; the server runs
without a classifier until a policy names one.
"""
