"""The library database: engine and dialect (engine.py, dialect.py), tables (orm.py), and every query,
grouped by topic in the modules beside this one and re-exported here as `store.<query>`."""

from __future__ import annotations

from imgsearch.store.dups import (  # noqa: F401
    dup_scan,
    dups_state,
    exact_candidates,
    full_hashes,
    image_hashes,
    save_fingerprints,
    save_full_hashes,
    fingerprint_lengths,
    save_image_hashes,
)
from imgsearch.store.frames import (  # noqa: F401
    encoded_image_ids,
    frame_index_ids,
    frame_owners,
    save_frames,
    video_count,
    video_vectors,
)
from imgsearch.store.images import (  # noqa: F401
    KnownFile,
    add_roots,
    content_keys_in_use,
    count_images,
    dates_for,
    delete_images,
    filter_ids,
    filter_index_ids,
    forget_root,
    get_image,
    gps_points,
    image_id_for_path,
    indexed_paths,
    indexed_rows,
    indexed_photos,
    known_files,
    list_roots,
    month_counts,
    month_photos,
    move_image,
    save_places,
    unplaced,
    paths_for,
    save_images,
    save_skipped,
    skipped_images,
)
from imgsearch.store.records import ImageRecord, ModelRecord  # noqa: F401
from imgsearch.store.runs import RUN_COUNTS, finish_run, last_run, start_run  # noqa: F401
from imgsearch.store.tags import give_tags, replace_tags, tag_counts, tags_of, take_tags  # noqa: F401
from imgsearch.store.vectors import (  # noqa: F401
    TEXT_CACHE_SIZE,
    bump_generation,
    cached_text_vectors,
    count_vectors,
    from_blobs,
    generation_of,
    get_model,
    get_or_create_model,
    iter_vectors,
    latest_build,
    list_models,
    models_with_vectors,
    load_vectors,
    photo_vectors,
    prune_builds,
    record_build,
    remember_text_vectors,
    save_vectors,
    to_blob,
    vector_ids,
    vectors_for,
)
