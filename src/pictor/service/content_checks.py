"""The content policy on a request's text and images, on the way in and on the way out: a block is audited and
refuses the whole request (ModerationBlocked)."""

from __future__ import annotations

from typing import Any

from PIL import Image

from pictor.core import Decision, ImageJob
from pictor.service.errors import ModerationBlocked
from pictor.service.governance import Governance
from pictor.storage import Principal


class ContentChecks:
    def __init__(self, governance: Governance):
        self.governance = governance

    def level(self, moderation: str, tenant_settings: dict[str, Any]) -> str:
        """The policy level of a request: its `moderation` within what its tenant allows."""
        return self.governance.level(moderation, tenant_settings)

    def check_text(self, job: ImageJob, level: str, principal: Principal | None) -> Decision:
        texts = {"prompt": job.prompt}
        decision = self.governance.policy.evaluate(texts, level, "input")
        if decision.blocked:
            self._refuse(job, decision, principal, texts)
        return decision

    def check_images(self, job: ImageJob, images: list[Image.Image], level: str, stage: str,
                     principal: Principal | None) -> list[Decision]:
        """The image classifier's verdict on each input (or output) image; a block refuses the whole request."""
        decisions = [self.governance.policy.evaluate_image(image, level, stage) for image in images]
        for decision in decisions:
            if decision.blocked:
                self._refuse(job, decision, principal, {"prompt": job.prompt})
        return decisions

    def _refuse(self, job: ImageJob, decision: Decision, principal: Principal | None, texts: dict[str, str]):
        self.governance.refuse(decision, tenant=job.tenant_id, key_id=principal.key_id if principal else None,
                               user=job.user, kind=job.kind.value, texts=texts)
        raise ModerationBlocked(decision, self.governance.policy_version)
