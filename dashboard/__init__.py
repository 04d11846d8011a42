"""Helpers for the Streamlit app: plain, testable logic (gallery, compute) beside thin UI code."""
