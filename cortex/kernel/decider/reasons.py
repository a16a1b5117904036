"""The machine-readable reason codes of the decider's decisions (docs/kernel.md lists them)."""

from __future__ import annotations

# action.scheduled
DEPENDENCIES_MET = "dependencies_met"
SLOT_FREED = "slot_freed"
RETRY_DUE = "retry_due"

# action.waiting
WAITING_ON_DEPENDENCIES = "waiting_on_dependencies"

# action.throttled
PARALLEL_LIMIT = "parallel_limit"

# action.denied (each followed by action.failed with the same code, except the two id conflicts)
UNKNOWN_ACTION_TYPE = "unknown_action_type"
INVALID_MODE = "invalid_mode"
UNKNOWN_TOOL = "unknown_tool"
UNKNOWN_AGENT = "unknown_agent"
UNKNOWN_WORKFLOW = "unknown_workflow"
UNKNOWN_INTERNAL = "unknown_internal"
INVALID_PARAMS = "invalid_params"
INVALID_SCHEMA = "invalid_schema"
UNRESOLVED_REFERENCE = "unresolved_reference"
UNKNOWN_DEPENDENCY = "unknown_dependency"
DEPENDENCY_CYCLE = "dependency_cycle"
DUPLICATE_ID = "duplicate_id"
RESERVED_ID = "reserved_id"

# action.timed_out, action.retried
TIMEOUT = "timeout"
RETRYABLE_FAILURE = "retryable_failure"

# action.failed written by the decider (besides the denial codes and timeout)
DEPENDENCY_FAILED = "dependency_failed"
UNKNOWN_ACTION = "unknown_action"

# action.cancelled and turn.cancelled
CANCEL_REQUESTED = "cancel_requested"
DEPENDENCY_CANCELLED = "dependency_cancelled"
TURN_CANCELLED = "turn_cancelled"
RUN_CANCELLED = "run_cancelled"
RUN_FAILED = "run_failed"

# run.failed
MAX_ITERATIONS = "max_iterations"
TURN_FAILED = "turn_failed"
ACTION_FAILED = "action_failed"

# timer.set purposes
ACTION_TIMEOUT = "action_timeout"
ACTION_RETRY = "action_retry"
