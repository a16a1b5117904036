"""Tests of the live CLI (cortex run, cortex chat) and the cortex up supervisor."""
