"""Sessions: multi-turn refinement over the Images use cases.

A turn says something ("a red circle", "make it green", "go back to the first one and make it blue"), maybe with
uploaded images and a mask. The session decides what that means (generate, or edit which image: see
`references`), runs it through ImageService (so content policy, hard masks, provenance and the audit log are the
same as for any other request), and records the turn. Turns form a tree: each has a parent, the session has a
current tip, undo moves the tip back, and a turn may branch from any earlier one. Nothing is ever deleted.
"""

from __future__ import annotations

import secrets
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal

from pictor.core import (
    Artifact,
    Background,
    ImageFormat,
    ImageJob,
    JobKind,
    ModerationLevel,
    Quality,
    new_image_id,
    sha256_hex,
)
from pictor.engine.registry import ModelNotFound
from pictor.engine.scene import SceneReader
from pictor.service.composition import target_start, wants_composition
from pictor.service.errors import InvalidRequest, NotFoundError, UnknownModel
from pictor.service.images import ImageService, ImagesResult, PartialImage, Plan, ProducedImage
from pictor.service.inputs import ACCEPTED_FORMATS, open_image
from pictor.service.planning import resolve_size
from pictor.service.references import Context, GalleryImage, Reference, Resolution, reads_as_instruction, resolve
from pictor.storage import BlobStore, Database, Principal
from pictor.storage.database import SessionRecord, SessionStore, TurnRecord

Action = Literal["generate", "edit", "auto"]
MAX_TEXT_CHARS = 32000
MAX_TURN_IMAGES = 16


def new_session_id() -> str:
    return f"sess_{secrets.token_hex(12)}"


def new_turn_id() -> str:
    return f"turn_{secrets.token_hex(12)}"


@dataclass(frozen=True)
class ImageInput:
    """An image given with a turn: uploaded bytes, or one of the tenant's stored images by id; maybe named."""

    data: bytes | None = None
    image_id: str | None = None
    name: str | None = None


@dataclass(frozen=True)
class NewSession:
    """What a new session starts with: a title and the defaults of its turns."""

    model: str | None = None
    size: str | None = None
    quality: Quality | None = None
    title: str | None = None


@dataclass(frozen=True)
class TurnRequest:
    text: str
    images: tuple[ImageInput, ...] = ()
    mask: ImageInput | None = None
    markup: ImageInput | None = None  # strokes over the edited image that say where (and in what colour) to change
    action: Action = "auto"
    parent_turn: str | None = None
    seed: int | None = None
    size: str | None = None  # None: the session's size for a generation, the source's own size for an edit
    quality: Quality | None = None
    output_format: ImageFormat = "png"
    output_compression: int = 100
    background: Background = "auto"
    moderation: ModerationLevel = "auto"
    model: str | None = None
    user: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)  # kept with the turn (what a Responses request echoes)
    turn_id: str | None = None  # chosen by the caller when it must name the turn before it exists (streaming)


@dataclass
class _Upload:
    """An image that came with this turn: its bytes, and its id once stored (stored images have one already)."""

    data: bytes
    name: str | None
    image_id: str | None
    placeholder: str


@dataclass
class PreparedTurn:
    """A turn with its meaning decided and its job checked by ImageService: every refusal has happened."""

    session: SessionRecord
    turn_id: str
    parent_id: str | None
    action: str  # generate / edit
    request: TurnRequest
    references: tuple[Reference, ...]
    inputs: list[str]  # image ids (or upload placeholders) the job reads, source first
    uploads: list[_Upload]
    plan: Plan
    is_new_session: bool = False

    @property
    def prompt(self) -> str:
        return self.plan.job.prompt


@dataclass
class TurnOutcome:
    turn: TurnRecord
    image: ProducedImage
    result: ImagesResult


class SessionService:
    def __init__(self, images: ImageService, database: Database, blobs: BlobStore):
        self.images = images
        self.database = database
        self.blobs = blobs
        self.store = SessionStore(database)

    # ---- sessions ------------------------------------------------------------------------------

    def create(self, principal: Principal, new: NewSession) -> SessionRecord:
        """A new, empty session; its model, size and quality are the defaults of its turns."""
        self._check_session_quota(principal)
        session = self._new_session(principal, new)
        return self.store.create_session(principal.tenant_id, session.id, title=session.title,
                                         options=session.options)

    def _check_session_quota(self, principal: Principal) -> None:
        if self.images.quotas is not None:
            self.images.quotas.check_holdings(principal.tenant_id, sessions=1)

    def get(self, principal: Principal, session_id: str) -> tuple[SessionRecord, list[TurnRecord]]:
        return self._session(principal, session_id), self.store.session_turns(principal.tenant_id, session_id)

    def turn(self, principal: Principal, turn_id: str) -> TurnRecord:
        return self.store.get_turn(principal.tenant_id, turn_id)

    def undo(self, principal: Principal, session_id: str) -> tuple[SessionRecord, list[TurnRecord]]:
        """Move the tip back to its parent turn (no tip at all after the first turn); nothing is deleted."""
        session = self._session(principal, session_id)
        if session.tip_turn_id is None:
            raise InvalidRequest("There is nothing to undo in this session.", None, "nothing_to_undo")
        tip = self.store.get_turn(principal.tenant_id, session.tip_turn_id)
        self.store.set_session_tip(principal.tenant_id, session_id, tip.parent_id)
        return self.get(principal, session_id)

    def _session(self, principal: Principal, session_id: str) -> SessionRecord:
        return self.store.get_session(principal.tenant_id, session_id)

    def _new_session(self, principal: Principal, new: NewSession) -> SessionRecord:
        """An unsaved session record, its defaults checked (a bad model or size is refused before any turn)."""
        if new.model is not None:
            try:
                self.images.registry.resolve(new.model)
            except ModelNotFound as error:
                raise UnknownModel(error.name) from None
        if new.size is not None and new.size != "auto":
            resolve_size(new.size)
        options = {key: value for key, value in (("model", new.model), ("size", new.size),
                                                 ("quality", new.quality)) if value}
        now = datetime.now(UTC)
        return SessionRecord(new_session_id(), principal.tenant_id, new.title, options, None, now, now)

    # ---- turns ---------------------------------------------------------------------------------

    async def prepare_turn(self, principal: Principal, session_id: str | None, request: TurnRequest,
                           new_session: NewSession | None = None) -> PreparedTurn:
        """Decide what the turn means and check its job; nothing is made or stored here.

        With `session_id` None the turn opens a new session (`new_session` says its title and defaults), which is
        stored with the turn, so a refused first turn leaves no empty session behind.
        """
        if session_id is None:
            self._check_session_quota(principal)
            session = self._new_session(principal, new_session or NewSession())
        else:
            session = self._session(principal, session_id)
        if not request.text.strip():
            raise InvalidRequest("A turn needs some text.", "text", "missing_text")
        if len(request.text) > MAX_TEXT_CHARS:
            raise InvalidRequest(f"The text is {len(request.text)} characters; the limit is {MAX_TEXT_CHARS}.",
                                 "text", "string_above_max_length")
        if len(request.images) > MAX_TURN_IMAGES:
            raise InvalidRequest(f"At most {MAX_TURN_IMAGES} images per turn.", "images", "too_many_images")
        turns = self.store.session_turns(principal.tenant_id, session.id) if session_id is not None else []
        by_id = {turn.id: turn for turn in turns}
        base = self._base_turn(session, by_id, request.parent_turn)
        uploads = [self._upload(principal, given, index) for index, given in enumerate(request.images)]
        reader = self.images.scene_reader(request.model or session.options.get("model"))
        resolution = resolve(request.text, self._context(turns, by_id, base, uploads, request.text), reader)
        action, prompt, inputs, parent_id = self._decide(request, resolution, uploads, base, turns, reader)
        job = self._job(principal, session, request, action, prompt, [self._bytes(principal, i, uploads)
                                                                      for i in inputs])
        plan = await self.images.prepare(job, principal)
        return PreparedTurn(session, request.turn_id or new_turn_id(), parent_id, action, request,
                            resolution.references, inputs, uploads, plan, is_new_session=session_id is None)

    async def run_turn(self, prepared: PreparedTurn, principal: Principal,
                       on_partial: Callable[[PartialImage], None] | None = None,
                       partial_images: int = 0) -> TurnOutcome:
        result = await self.images.run(prepared.plan, principal, on_partial=on_partial,
                                       partial_images=partial_images)
        return self.finish_turn(prepared, principal, result)

    async def stream_turn(self, prepared: PreparedTurn, principal: Principal,
                          partial_images: int) -> AsyncIterator[PartialImage | TurnOutcome]:
        """PartialImage events as previews arrive, then the TurnOutcome."""
        async for event in self.images.stream(prepared.plan, principal, partial_images):
            yield event if isinstance(event, PartialImage) else self.finish_turn(prepared, principal, event)

    def finish_turn(self, prepared: PreparedTurn, principal: Principal, result: ImagesResult) -> TurnOutcome:
        """Store the turn's uploads (those the job did not already store) and the turn; it becomes the tip."""
        if prepared.is_new_session:
            session = prepared.session
            self.store.create_session(principal.tenant_id, session.id, title=session.title, options=session.options)
        ids = {upload.placeholder: self._stored_upload(principal, prepared, upload) for upload in prepared.uploads}
        produced = result.images[0]
        references = [{**ref.to_dict(), "image_id": ids.get(ref.image_id, ref.image_id)}
                      for ref in prepared.references]
        params = {"size": result.size, "quality": result.quality, "background": result.background,
                  "output_format": result.output_format, "seed": produced.seed, "model": prepared.plan.model,
                  "revised_prompt": produced.revised_prompt, "unknown_words": produced.unknown_words,
                  "usage": result.usage}
        turn = self.store.add_turn(
            principal.tenant_id, prepared.session.id, prepared.turn_id, parent_id=prepared.parent_id,
            text=prepared.request.text, prompt=prepared.prompt, action=prepared.action,
            image_id=produced.artifact.id, inputs=[ids.get(i, i) for i in prepared.inputs],
            uploads=[{"image_id": ids[u.placeholder], "name": u.name} for u in prepared.uploads],
            references=references, params=params, extra=prepared.request.extra)
        return TurnOutcome(turn, produced, result)

    # ---- steps ---------------------------------------------------------------------------------

    def _base_turn(self, session: SessionRecord, by_id: dict[str, TurnRecord],
                   parent_turn: str | None) -> TurnRecord | None:
        """The turn the new one follows: the one asked for (a branch), else the session's tip."""
        if parent_turn is not None:
            if parent_turn not in by_id:
                raise NotFoundError(f"No turn '{parent_turn}' in this session.", "parent_turn", "turn_not_found")
            return by_id[parent_turn]
        return by_id.get(session.tip_turn_id) if session.tip_turn_id else None

    def _decide(self, request: TurnRequest, resolution: Resolution, uploads: list[_Upload],
                base: TurnRecord | None, turns: list[TurnRecord],
                reader: SceneReader) -> tuple[str, str, list[str], str | None]:
        """(action, prompt, input image ids with the source first, parent turn) for a turn.

        The source is the image the text names first, else the first unnamed image given with the turn, else the
        current image. Editing an image an earlier turn made branches from that turn (unless parent_turn says).
        """
        source = resolution.source
        unnamed = [upload.placeholder for upload in uploads if upload.name is None]
        composed = self._composition(request, resolution, unnamed, base, reader)
        if composed is not None:
            return composed
        candidates = [source.image_id if source else None, *unnamed[:1], base.image_id if base else None]
        source_id = next((image_id for image_id in candidates if image_id), None)
        # Markup marks an image to change: the turn is an edit whatever its words.
        action = self._action(request, resolution.prompt, source_id,
                              explicit=source is not None or request.markup is not None, reader=reader)
        inputs: list[str] = []
        if action == "edit":
            if source is not None and not resolution.prompt:
                raise InvalidRequest("The text says which image, but not what to do with it.", "text",
                                     "missing_instruction")
            inputs = list(dict.fromkeys([source_id, *(ref.image_id for ref in resolution.references), *unnamed]))
        elif request.mask is not None or request.markup is not None:
            param = "mask" if request.mask is not None else "markup"
            raise InvalidRequest(f"A {param} needs an edit: there is no image to edit in this turn.", param,
                                 "invalid_value")
        parent_id = request.parent_turn or (base.id if base is not None else None)
        made_by = {turn.image_id: turn.id for turn in turns if turn.image_id}
        if request.parent_turn is None and source is not None and source.image_id in made_by:
            parent_id = made_by[source.image_id]
        return action, resolution.prompt or request.text.strip(), inputs, parent_id

    @staticmethod
    def _composition(request: TurnRequest, resolution: Resolution, unnamed: list[str], base: TurnRecord | None,
                     reader: SceneReader) -> tuple[str, str, list[str], str | None] | None:
        """A composition turn ("put this logo on the blue square", "place image 2 in the top left"), or None.

        The image the text names (or the turn's unnamed upload) is the reference, placed onto the current image
        (or, in a turn with no current image, onto the turn's first unnamed upload); ImageService reads the job's
        second image as the reference (see service/composition).
        """
        prompt = resolution.prompt or request.text.strip()
        if request.action == "generate":
            return None
        if not wants_composition(prompt, reader):
            if not wants_composition(request.text, reader):
                return None
            prompt = request.text.strip()  # "put the logo on image 1": the target phrase named the image
        where = target_start(request.text, reader)
        onto = [ref.image_id for ref in resolution.references if where is not None and ref.start >= where]
        named = [ref.image_id for ref in resolution.references if ref.image_id not in onto]
        canvas = next(iter(onto), None) or (base.image_id if base is not None else next(iter(unnamed), None))
        reference = next((image_id for image_id in [*named, *unnamed] if image_id != canvas), None)
        if canvas is None or reference is None:
            return None
        parent_id = request.parent_turn or (base.id if base is not None else None)
        return "edit", prompt, [canvas, reference], parent_id

    def _upload(self, principal: Principal, given: ImageInput, index: int) -> _Upload:
        """Checked now, so that a bad file is a 400 before any work, whatever the action turns out to be."""
        name = given.name.strip() if given.name and given.name.strip() else None
        if given.image_id is not None:
            data, _ = self.images.image_bytes(principal, given.image_id)  # another tenant's: 404
            return _Upload(data, name, given.image_id, given.image_id)
        if not given.data:
            raise InvalidRequest(f"images[{index}] is empty.", "images", "invalid_image_file")
        open_image(given.data, "images")
        return _Upload(given.data, name, None, f"upload:{index}")

    @staticmethod
    def _context(turns: list[TurnRecord], by_id: dict[str, TurnRecord], base: TurnRecord | None,
                 uploads: list[_Upload], text: str) -> Context:
        gallery: list[GalleryImage] = []
        for turn in turns:
            for upload in turn.uploads:
                gallery.append(GalleryImage(upload["image_id"], turn.text, name=upload.get("name")))
            if turn.image_id:
                gallery.append(GalleryImage(turn.image_id, turn.prompt, turn.position, turn.id))
        gallery += [GalleryImage(upload.placeholder, text, name=upload.name) for upload in uploads]
        parent = by_id.get(base.parent_id) if base is not None and base.parent_id else None
        return Context(tuple(gallery), base.image_id if base else None, parent.image_id if parent else None)

    @staticmethod
    def _action(request: TurnRequest, prompt: str, source_id: str | None, explicit: bool,
                reader: SceneReader) -> str:
        """generate / edit: as asked, or (auto) edit when the text names an image or reads as an instruction."""
        if request.action == "generate":
            return "generate"
        if source_id is None:
            if request.action == "edit":
                raise InvalidRequest("There is no image to edit: this session has none yet and the turn brings none.",
                                     "action", "no_image_to_edit")
            return "generate"
        if request.action == "edit" or explicit or reads_as_instruction(prompt, reader):
            return "edit"
        return "generate"

    def _bytes(self, principal: Principal, image_id: str, uploads: list[_Upload]) -> bytes:
        for upload in uploads:
            if upload.placeholder == image_id:
                return upload.data
        return self.images.image_bytes(principal, image_id)[0]

    def _job(self, principal: Principal, session: SessionRecord, request: TurnRequest, action: str, prompt: str,
             images: list[bytes]) -> ImageJob:
        options = session.options
        edit = action == "edit"
        size = request.size or ("auto" if edit else options.get("size", "auto"))
        mask = None
        if request.mask is not None:
            mask = request.mask.data if request.mask.image_id is None else \
                self.images.image_bytes(principal, request.mask.image_id)[0]
        markup = None
        if request.markup is not None:
            markup = request.markup.data if request.markup.image_id is None else \
                self.images.image_bytes(principal, request.markup.image_id)[0]
        # The request rules are ImageJob's: a broken one is an InvalidJob naming its parameter (a 400 as it is).
        return ImageJob(kind=JobKind.EDIT if edit else JobKind.GENERATE, prompt=prompt, images=tuple(images),
                        mask=mask, markup=markup, size=size, seed=request.seed,
                        quality=request.quality or options.get("quality", "auto"),
                        output_format=request.output_format, output_compression=request.output_compression,
                        background=request.background, moderation=request.moderation,
                        model=request.model or options.get("model"), tenant_id=principal.tenant_id,
                        user=request.user, session_id=session.id)

    def _stored_upload(self, principal: Principal, prepared: PreparedTurn, upload: _Upload) -> str:
        """The upload's image id: as given, as the job stored it (an edit's input), or stored here as an upload."""
        if upload.image_id is not None:
            return upload.image_id
        known = self.database.find_image(principal.tenant_id, sha256_hex(upload.data))
        if known is not None:
            return known.id
        image = open_image(upload.data, "images")
        artifact = Artifact(id=new_image_id(), data=upload.data, format=ACCEPTED_FORMATS[image.format],
                            width=image.width, height=image.height, tenant_id=principal.tenant_id)
        self.blobs.put(artifact.data)
        self.database.record_image(artifact, params={"kind": "upload", "session_id": prepared.session.id},
                                   key_id=principal.key_id, user=prepared.request.user)
        return artifact.id
