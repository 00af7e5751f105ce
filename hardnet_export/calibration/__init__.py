"""Calibration sets and INT8 (explicit Q/DQ) graphs with an accuracy gate."""
