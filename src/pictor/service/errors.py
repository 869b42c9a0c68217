"""What can go wrong in a use case, in terms the API layer maps onto HTTP and the OpenAI error shape."""

from __future__ import annotations

from pictor.core import Decision, Refusal

# A refusal with a message for the user, the offending parameter, and a stable code. The class is core's, so that
# ImageJob's own checks (core.InvalidJob) are ServiceErrors too: one type for every layer to catch and report.
ServiceError = Refusal


class InvalidRequest(ServiceError):
    kind = "invalid_request"


class NotFoundError(ServiceError):
    kind = "not_found"


class UnknownModel(ServiceError):
    kind = "model_not_found"

    def __init__(self, name: str):
        super().__init__(f"The model '{name}' does not exist or you do not have access to it.", "model",
                         "model_not_found")


class ModelFailure(ServiceError):
    kind = "model_failure"


class ModerationBlocked(ServiceError):
    """The content policy refused the request: which stage and categories, and the rule's reason (never the terms)."""

    kind = "moderation_blocked"

    def __init__(self, decision: Decision, policy_version: str):
        message = f"Your request was rejected by this server's content policy: {decision.reason}"
        super().__init__(message, None, "moderation_blocked",
                         {"moderation_details": {"stage": decision.stage, "categories": list(decision.categories),
                                                 "rule_ids": list(decision.rule_ids),
                                                 "policy_version": policy_version}})
