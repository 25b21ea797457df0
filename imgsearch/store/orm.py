"""SQLAlchemy 2.0 typed models of a library's database. No queries here (they are in the modules beside it)."""

from __future__ import annotations

from datetime import datetime, timezone

from sqlalchemy import BigInteger, Float, ForeignKey, Index, Integer, LargeBinary, MetaData, String, Text
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

# Stable constraint names so Alembic migrations can refer to them on SQLite (batch mode).
NAMING = {
    "ix": "ix_%(table_name)s_%(column_0_name)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

# Byte counts and nanosecond times need 64 bits: PostgreSQL's INTEGER has 32 (SQLite's INTEGER has 64 already).
BigInt = BigInteger().with_variant(Integer(), "sqlite")

STATUS_INDEXED = "indexed"
STATUS_SKIPPED = "skipped"
STATUS_SET_ASIDE = "set_aside"  # moved out by `dups --move-to`; its vectors wait in the journal for undo


def utc_now() -> datetime:
    """Naive UTC timestamp (SQLite stores no zone; every *_at column is UTC)."""
    return datetime.now(timezone.utc).replace(tzinfo=None)


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING)


class Root(Base):
    """A folder the user asked to index; one library can hold several."""

    __tablename__ = "roots"
    id: Mapped[int] = mapped_column(primary_key=True)
    path: Mapped[str] = mapped_column(Text, unique=True)
    added_at: Mapped[datetime] = mapped_column(default=utc_now)


class Image(Base):
    """One file seen by the crawler: indexed, or skipped with a reason."""

    __tablename__ = "images"
    __table_args__ = (Index("ix_images_status_shot_at", "status", "shot_at"),)
    id: Mapped[int] = mapped_column(primary_key=True)
    path: Mapped[str] = mapped_column(Text, unique=True)
    size: Mapped[int] = mapped_column(BigInt)
    mtime_ns: Mapped[int] = mapped_column(BigInt)
    content_hash: Mapped[str | None] = mapped_column(String(64), index=True)
    width: Mapped[int | None]
    height: Mapped[int | None]
    format: Mapped[str | None] = mapped_column(String(16))
    taken_at: Mapped[datetime | None] = mapped_column(index=True)  # EXIF DateTimeOriginal, camera-local time
    # taken_at, else the file's modification time (naive UTC): what date filters, the timeline and the date order use
    # (indexed after the status: every query asks for indexed photos, then a range of dates)
    shot_at: Mapped[datetime | None]
    camera_make: Mapped[str | None] = mapped_column(Text)
    camera_model: Mapped[str | None] = mapped_column(Text)
    gps_lat: Mapped[float | None]
    gps_lon: Mapped[float | None]
    place: Mapped[str | None] = mapped_column(Text)  # the town nearest the GPS position (imgsearch.places)
    country: Mapped[str | None] = mapped_column(String(2), index=True)  # its ISO code; "": at sea; None: not looked up
    duration_ms: Mapped[int | None]  # a video's length (its vectors are its frames'); None for a still image
    real_path: Mapped[str | None] = mapped_column(Text)  # where `path` led when indexed (symbolic links resolved)
    status: Mapped[str] = mapped_column(String(16), default=STATUS_INDEXED, index=True)
    skip_reason: Mapped[str | None] = mapped_column(Text)
    first_seen_at: Mapped[datetime] = mapped_column(default=utc_now)
    updated_at: Mapped[datetime] = mapped_column(default=utc_now)


class Model(Base):
    """A CLIP model that produced vectors in this library; vectors are kept per model."""

    __tablename__ = "models"
    id: Mapped[int] = mapped_column(primary_key=True)
    key: Mapped[str] = mapped_column(Text, unique=True)  # identity: source + weights fingerprint
    name: Mapped[str] = mapped_column(Text)  # as open_clip takes it (may carry hf-hub:/local-dir:)
    pretrained: Mapped[str | None] = mapped_column(Text)  # tag or checkpoint path
    checkpoint_sha256: Mapped[str | None] = mapped_column(String(64))
    dim: Mapped[int]
    preprocess: Mapped[str] = mapped_column(Text)  # JSON signature of the image preprocessing
    generation: Mapped[int] = mapped_column(default=0)  # bumped whenever its vectors change
    created_at: Mapped[datetime] = mapped_column(default=utc_now)
    last_used_at: Mapped[datetime] = mapped_column(default=utc_now)


class Embedding(Base):
    """The source of truth for vectors: float16, L2-normalised, one per (image, model)."""

    __tablename__ = "embeddings"
    image_id: Mapped[int] = mapped_column(ForeignKey("images.id", ondelete="CASCADE"), primary_key=True)
    model_id: Mapped[int] = mapped_column(ForeignKey("models.id", ondelete="CASCADE"), primary_key=True)
    vector: Mapped[bytes] = mapped_column(LargeBinary)
    # the model's generation when this vector was written: an index built at generation g needs
    # exactly the vectors with generation > g re-added (changed files keep their image id)
    generation: Mapped[int] = mapped_column(default=0, server_default="0")

    __table_args__ = (Index("ix_embeddings_model_id", "model_id"),
                      # the vectors written since an index's generation, read after every indexer commit
                      Index("ix_embeddings_model_id_generation", "model_id", "generation", "image_id"))


# A frame's id in a model's FAISS index: frames share the index with images, in an id range of their own.
FRAME_ID_BASE = 1 << 40


class Frame(Base):
    """A video's key frame, embedded by one model: a video is found through its frames."""

    __tablename__ = "frames"
    id: Mapped[int] = mapped_column(primary_key=True)  # its FAISS id is FRAME_ID_BASE + id
    image_id: Mapped[int] = mapped_column(ForeignKey("images.id", ondelete="CASCADE"))
    model_id: Mapped[int] = mapped_column(ForeignKey("models.id", ondelete="CASCADE"))
    t_ms: Mapped[int]  # the frame's time in the video
    vector: Mapped[bytes] = mapped_column(LargeBinary)
    generation: Mapped[int] = mapped_column(default=0, server_default="0")  # as Embedding.generation

    __table_args__ = (Index("ix_frames_image_id_model_id_t_ms", "image_id", "model_id", "t_ms", unique=True),
                      Index("ix_frames_model_id", "model_id"),
                      Index("ix_frames_model_id_generation", "model_id", "generation", "id"))


class IndexBuild(Base):
    """A FAISS index written from the DB vectors: which model, spec, count and generation it holds."""

    __tablename__ = "index_builds"
    id: Mapped[int] = mapped_column(primary_key=True)
    model_id: Mapped[int] = mapped_column(ForeignKey("models.id", ondelete="CASCADE"), index=True)
    spec: Mapped[str] = mapped_column(Text)  # FAISS factory string, stored verbatim
    params: Mapped[str] = mapped_column(Text, default="{}", server_default="{}")  # JSON: nprobe, k_factor...
    recall_at_10: Mapped[float | None]  # measured against exact search at build time
    trained_count: Mapped[int] = mapped_column(default=0, server_default="0")  # vectors when (re)trained
    count: Mapped[int]
    generation: Mapped[int]
    filename: Mapped[str] = mapped_column(Text)
    build_s: Mapped[float]
    built_at: Mapped[datetime] = mapped_column(default=utc_now)


class TextVector(Base):
    """Cached text-query embeddings: a repeated query needs no model at all."""

    __tablename__ = "text_vectors"
    model_id: Mapped[int] = mapped_column(ForeignKey("models.id", ondelete="CASCADE"), primary_key=True)
    text: Mapped[str] = mapped_column(Text, primary_key=True)
    vector: Mapped[bytes] = mapped_column(LargeBinary)
    used_at: Mapped[datetime] = mapped_column(default=utc_now, index=True)


class Run(Base):
    """One `imgsearch index` run and its summary counts."""

    __tablename__ = "runs"
    id: Mapped[int] = mapped_column(primary_key=True)
    model_id: Mapped[int | None] = mapped_column(ForeignKey("models.id", ondelete="SET NULL"))
    roots: Mapped[str] = mapped_column(Text)  # JSON list
    status: Mapped[str] = mapped_column(String(16), default="running")  # running | done | failed
    new: Mapped[int] = mapped_column(default=0)
    changed: Mapped[int] = mapped_column(default=0)
    moved: Mapped[int] = mapped_column(default=0)
    unchanged: Mapped[int] = mapped_column(default=0)
    removed: Mapped[int] = mapped_column(default=0)
    skipped: Mapped[int] = mapped_column(default=0)
    encoded: Mapped[int] = mapped_column(default=0)
    executor: Mapped[str | None] = mapped_column(Text)  # "this machine", or "a Ray cluster of N nodes"
    started_at: Mapped[datetime] = mapped_column(default=utc_now)
    finished_at: Mapped[datetime | None]


class ImageHash(Base):
    """Perceptual hashes of an image (all 8 flips/rotations) and, once needed, its full-content hash."""

    __tablename__ = "image_hashes"
    image_id: Mapped[int] = mapped_column(ForeignKey("images.id", ondelete="CASCADE"), primary_key=True)
    content_hash: Mapped[str] = mapped_column(String(64))  # the image's content_hash these were computed for
    phashes: Mapped[bytes | None] = mapped_column(LargeBinary)  # (8 flips/rotations + 5 crops) x (8 + 32 pHash bytes)
    full_hash: Mapped[str | None] = mapped_column(String(64))  # blake2b of every byte (exact duplicates)
    full_hash_stat: Mapped[str | None] = mapped_column(Text)  # "size:mtime_ns" the full hash was read at


class DupScan(Base):
    """Per model: the thresholds users gave and the last scan (its candidate pairs: dups.pair_cache)."""

    __tablename__ = "dup_scans"
    model_id: Mapped[int] = mapped_column(ForeignKey("models.id", ondelete="CASCADE"), primary_key=True)
    thresholds: Mapped[str] = mapped_column(Text, default="{}")  # JSON: the thresholds users gave (the rest: defaults)
    scanned_at: Mapped[datetime | None]
    calibration: Mapped[str | None] = mapped_column(Text)  # JSON: the similar threshold measured on this library


class DupAction(Base):
    """One `dups --move-to/--link --apply`; `dups undo` reverses the latest one."""

    __tablename__ = "dup_actions"
    id: Mapped[int] = mapped_column(primary_key=True)
    kind: Mapped[str] = mapped_column(String(16))  # move | hardlink | symlink
    target: Mapped[str | None] = mapped_column(Text)  # the --move-to folder
    created_at: Mapped[datetime] = mapped_column(default=utc_now)
    undone_at: Mapped[datetime | None]
    created_dirs: Mapped[str | None] = mapped_column(Text)  # JSON list: folders this action made (undo removes them)


# A journal item's life: the intent is committed before the file is touched, the outcome after, so a
# crash between the two leaves an item in a passing state that the next run settles from what is on disk.
ITEM_MOVING, ITEM_LINKING, ITEM_DONE, ITEM_RESTORING, ITEM_RESTORED = "moving", "linking", "done", "restoring", "restored"


class DupActionItem(Base):
    """One file an action touched, with what undo needs to put it back exactly."""

    __tablename__ = "dup_action_items"
    id: Mapped[int] = mapped_column(primary_key=True)
    action_id: Mapped[int] = mapped_column(ForeignKey("dup_actions.id", ondelete="CASCADE"), index=True)
    image_id: Mapped[int | None] = mapped_column(Integer)
    src: Mapped[str] = mapped_column(Text)  # where the file was
    dest: Mapped[str] = mapped_column(Text)  # move: where it went; link: the keeper it now points to
    size: Mapped[int] = mapped_column(BigInt)
    mtime_ns: Mapped[int] = mapped_column(BigInt)
    mode: Mapped[int]
    full_hash: Mapped[str] = mapped_column(String(64))
    vectors: Mapped[str | None] = mapped_column(Text)  # move: JSON {model_id: hex fp16 vector} taken out of the index
    restored_at: Mapped[datetime | None]
    state: Mapped[str] = mapped_column(String(16), default=ITEM_DONE, server_default=ITEM_DONE)


class Tag(Base):
    """A zero-shot label of an image (`imgsearch tag`), with its probability among the labels asked for."""

    __tablename__ = "tags"
    image_id: Mapped[int] = mapped_column(ForeignKey("images.id", ondelete="CASCADE"), primary_key=True)
    model_id: Mapped[int] = mapped_column(ForeignKey("models.id", ondelete="CASCADE"), primary_key=True)
    label: Mapped[str] = mapped_column(Text, primary_key=True, index=True)
    probability: Mapped[float] = mapped_column(Float)
    created_at: Mapped[datetime] = mapped_column(default=utc_now)


class PhotoTag(Base):
    """A tag a person gave a photo (the web page's selection): kept when its file changes, unlike the model's."""

    __tablename__ = "photo_tags"
    image_id: Mapped[int] = mapped_column(ForeignKey("images.id", ondelete="CASCADE"), primary_key=True)
    label: Mapped[str] = mapped_column(Text, primary_key=True, index=True)
    created_at: Mapped[datetime] = mapped_column(default=utc_now)
