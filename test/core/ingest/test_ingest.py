"""FrameAssembler: synchronisation and every kind of bad input, each with its counter and no exception."""

import numpy as np
import pytest
from conftest import make_frame

from dprecon_ros.config import DpreconConfig
from dprecon_ros.core.geometry import make_transform
from dprecon_ros.core.ingest.assembler import FrameAssembler
from dprecon_ros.io.bags import topic_handlers
from dprecon_ros.io.frame_messages import IMAGE, frame_messages


def feed(assembler: FrameAssembler, frame, skip=(), edit=None) -> None:
    handlers = topic_handlers(assembler.config, assembler)
    for topic, _msgtype, msg in frame_messages(frame, assembler.config.topics):
        if topic in skip:
            continue
        if edit is not None:
            msg = edit(topic, msg) or msg
        handlers[topic](msg)


def moving(i: int, step: float = 0.05) -> np.ndarray:
    return make_transform(np.eye(3), [i * step, 0.0, 0.0])


@pytest.fixture
def assembler() -> FrameAssembler:
    cfg = DpreconConfig()
    cfg.sync.queue_s = 10.0  # these tests feed whole sequences before popping, unlike the node
    return FrameAssembler(cfg)


def run(assembler, n=4, dt=0.5, **kwargs):
    for i in range(n):
        feed(assembler, make_frame(stamp=10 + i * dt, T=moving(i)), **kwargs)
    return assembler.pop_frames(flush=True)


def test_synchronised_frames_come_out_in_order(assembler):
    frames = run(assembler)
    assert [f.stamp for f in frames] == [10.0, 10.5, 11.0, 11.5]
    assert frames[0].labels == {1: "box"}
    assert np.allclose(frames[2].T_world_camera, moving(2))
    assert assembler.counters.snapshot() == {"synchronised": 4}  # nothing refused, nothing lost


def test_images_within_tolerance_match_and_pose_is_interpolated():
    a = FrameAssembler(DpreconConfig())
    topics = a.config.topics
    for i in range(3):
        frame = make_frame(stamp=10 + i * 0.1, T=moving(i))

        def shift(topic, msg):
            # images 50 ms after the pose (between two poses); depth 10 ms off colour, inside the tolerance
            if topic in (topics.rgb, topics.instance):
                msg.header.stamp.nanosec += 50_000_000
            if topic == topics.depth:
                msg.header.stamp.nanosec += 60_000_000

        feed(a, frame, edit=shift)
    frames = a.pop_frames(flush=True)
    assert [round(f.stamp, 3) for f in frames] == [10.05, 10.15]  # the last has no later pose to interpolate to
    assert np.allclose(frames[0].T_world_camera[:3, 3], [0.025, 0, 0], atol=1e-6)
    assert a.counters.get("lost_unmatched_pose") == 1


def test_unknown_encoding_is_counted(assembler):
    def yuv(topic, msg):
        if topic == assembler.config.topics.rgb:
            msg.encoding = "yuv422"

    assert run(assembler, edit=yuv) == []
    assert assembler.counters.get("lost_bad_rgb") == 4


def test_size_mismatch_is_counted(assembler):
    def shrink(topic, msg):
        if topic == assembler.config.topics.instance:
            from dprecon_ros.io.frame_messages import image_message

            return image_message(np.zeros((10, 10), np.uint16), "16UC1", 0.0, "cam").__class__(
                header=msg.header, height=10, width=10, encoding="16UC1", is_bigendian=0, step=20, data=np.zeros(200, np.uint8)
            )

    assert run(assembler, edit=shrink) == []
    assert assembler.counters.get("lost_size_mismatch") == 4


def test_nan_and_zero_depth_frames_are_rejected(assembler):
    frames = [make_frame(stamp=10 + i * 0.5, T=moving(i), depth=np.nan if i % 2 else 0.0) for i in range(4)]
    for f in frames:
        feed(assembler, f)
    assert assembler.pop_frames(flush=True) == []
    assert assembler.counters.get("lost_invalid_depth") == 4


def test_missing_camera_info_is_counted(assembler):
    assert run(assembler, skip=(assembler.config.topics.camera_info,)) == []
    assert assembler.counters.get("lost_no_camera_info") == 4


def test_zero_focal_length_camera_info_is_refused(assembler):
    def zero_k(topic, msg):
        if topic == assembler.config.topics.camera_info:
            msg.k = np.zeros(9)

    run(assembler, edit=zero_k)
    assert assembler.counters.get("bad_camera_info") >= 1


def test_stamps_out_of_order_within_window_are_reordered(assembler):
    frames = [make_frame(stamp=10 + i * 0.5, T=moving(i)) for i in range(4)]
    for f in [frames[1], frames[0], frames[3], frames[2]]:
        feed(assembler, f)
    out = assembler.pop_frames(flush=True)
    stamps = [f.stamp for f in out]
    assert stamps == sorted(stamps) and len(out) >= 2
    assert sum(v for k, v in assembler.counters.snapshot().items() if k.startswith("lost_late_")) == 4 - len(out)


def test_late_image_after_its_frame_was_built_is_dropped(assembler):
    for i in range(3):
        feed(assembler, make_frame(stamp=10 + i * 0.5, T=moving(i)))
    assert len(assembler.pop_frames()) >= 1
    feed(assembler, make_frame(stamp=9.0, T=moving(0)))
    assert assembler.counters.get("lost_late_rgb") == 1


def test_time_jump_back_resets_and_continues(assembler):
    """A bag restarted far in the past: input state is reset and the new stream is used."""
    run(assembler)
    for i in range(3):
        feed(assembler, make_frame(stamp=-100 + i * 0.5, T=moving(i)))
    assert assembler.counters.get("time_jump_back") == 1
    assert len(assembler.pop_frames(flush=True)) == 3


def test_pose_jump_drops_the_frame(assembler):
    for i in range(4):
        T = moving(i) if i != 2 else make_transform(np.eye(3), [50.0, 0, 0])
        feed(assembler, make_frame(stamp=10 + i * 0.5, T=T))
    out = assembler.pop_frames(flush=True)
    assert assembler.counters.get("lost_pose_jump") >= 1
    assert all(abs(f.T_world_camera[0, 3]) < 1 for f in out)


def test_nan_pose_is_ignored(assembler):
    def nan_pose(topic, msg):
        if topic == assembler.config.topics.pose:
            msg.pose.position.x = float("nan")

    assert run(assembler, edit=nan_pose) == []
    assert assembler.counters.get("bad_pose") == 4
    assert assembler.counters.get("lost_unmatched_pose") >= 1


def test_missing_instance_image_drops_unmatched_frames(assembler):
    topics = assembler.config.topics
    for i in range(6):
        feed(assembler, make_frame(stamp=10 + i * 0.5, T=moving(i)), skip=(topics.instance,) if i < 2 else ())
    out = assembler.pop_frames(flush=True)
    assert [f.stamp for f in out] == [11.0, 11.5, 12.0, 12.5]
    assert assembler.counters.get("lost_unmatched_instance") == 2


def test_empty_mask_keeps_frame_for_background(assembler):
    frame = make_frame(stamp=10.0)
    frame.instance[:] = 0
    frame.labels = {}
    feed(assembler, frame)
    out = assembler.pop_frames(flush=True)
    assert len(out) == 1 and out[0].instance_ids() == []
    assert assembler.counters.get("empty_mask") == 1


def test_bad_labels_are_counted_and_frames_fall_back(assembler):
    def garbage(topic, msg):
        if topic == assembler.config.topics.labels:
            msg.data = "not json"

    out = run(assembler, edit=garbage)
    assert assembler.counters.get("bad_labels") == 4
    assert all(f.labels == {1: "object"} for f in out) and len(out) == 4  # no labels at all: unlabelled instances
    assert assembler.counters.get("no_labels") == 4


def test_frame_whose_labels_were_lost_is_dropped(assembler):
    topics = assembler.config.topics
    for i in range(4):
        frame = make_frame(stamp=10 + i * 0.5, T=moving(i), instance_value=10 + i)
        frame.labels = {10 + i: "box"}
        feed(assembler, frame, skip=(topics.labels,) if i == 1 else ())
    out = assembler.pop_frames(flush=True)
    assert [f.stamp for f in out] == [10.0, 11.0, 11.5]
    assert assembler.counters.get("lost_missing_labels") == 1


def test_labels_arriving_after_images_are_waited_for(assembler):
    topics = assembler.config.topics
    frame = make_frame(stamp=10.0)
    feed(assembler, frame, skip=(topics.labels,))
    assert assembler.pop_frames() == []
    assembler.add_labels('{"1": "mug"}')
    out = assembler.pop_frames()
    assert len(out) == 1 and out[0].labels == {1: "mug"}


def test_tf_pose_source_chains_frames():
    cfg = DpreconConfig()
    cfg.topics.pose_source = "tf"
    a = FrameAssembler(cfg)
    frames = [make_frame(stamp=10 + i * 0.5, T=moving(i)) for i in range(3)]
    for f in frames:
        feed(a, f, skip=(cfg.topics.pose,))
    out = a.pop_frames(flush=True)
    assert len(out) == 3 and np.allclose(out[1].T_world_camera, moving(1))


def test_distorted_camera_is_undistorted_and_unknown_model_refused(assembler):
    def distort(topic, msg):
        if topic == assembler.config.topics.camera_info:
            msg.d = np.array([0.1, 0.0, 0.0, 0.0, 0.0])

    out = run(assembler, edit=distort)
    assert len(out) == 4
    b = FrameAssembler(DpreconConfig())

    def fisheye(topic, msg):
        if topic == b.config.topics.camera_info:
            msg.d, msg.distortion_model = np.array([0.1, 0.0, 0.0, 0.0]), "equidistant"

    assert run(b, edit=fisheye) == []
    assert b.counters.get("unsupported_distortion") >= 1


def test_queue_overflow_is_counted():
    cfg = DpreconConfig()
    cfg.sync.queue_size = 2
    a = FrameAssembler(cfg)
    for i in range(5):
        feed(a, make_frame(stamp=10 + i * 0.5, T=moving(i)), skip=(cfg.topics.pose, "/tf"))
    assert a.counters.get("lost_queue_overflow_rgb") == 3
    assert IMAGE  # the image topics share one message type


def test_camera_info_arriving_just_after_the_first_images_is_waited_for(assembler):
    topics = assembler.config.topics
    first = make_frame(stamp=10.0)
    feed(assembler, first, skip=(topics.camera_info,))
    assert assembler.pop_frames() == []
    feed(assembler, make_frame(stamp=10.5, T=moving(1)))
    assert [f.stamp for f in assembler.pop_frames(flush=True)] == [10.0, 10.5]
    assert assembler.counters.get("lost_no_camera_info") == 0


def test_frames_wait_for_a_late_first_camera_info_up_to_the_queue_bound():
    cfg = DpreconConfig()
    cfg.sync.queue_size = 3
    a = FrameAssembler(cfg)
    for i in range(5):
        feed(a, make_frame(stamp=10 + i * 0.5, T=moving(i)), skip=(cfg.topics.camera_info,))
        a.pop_frames()
    assert a.counters.get("lost_no_camera_info") == 3  # the oldest, whenever the colour queue was full
    feed(a, make_frame(stamp=12.5, T=moving(5)))
    assert [f.stamp for f in a.pop_frames(flush=True)] == [11.5, 12.0, 12.5]


def test_first_labels_arriving_late_are_waited_for_within_the_queue_bound():
    cfg = DpreconConfig()
    cfg.sync.queue_size = 4
    a = FrameAssembler(cfg)
    for i in range(12):  # 6 s of frames before the first labels message: longer than labels_wait_s
        feed(a, make_frame(stamp=10 + i * 0.5, T=moving(i)), skip=(cfg.topics.labels,))
        assert a.pop_frames() == []
    a.add_labels('{"1": "mug"}')
    out = a.pop_frames()
    assert len(out) == 4 and all(f.labels == {1: "mug"} for f in out)  # the queue bound kept the newest
    assert a.counters.get("lost_no_labels") >= 1


def test_without_a_labels_topic_instances_are_unlabelled():
    cfg = DpreconConfig()
    cfg.topics.labels = ""
    a = FrameAssembler(cfg)
    feed(a, make_frame(stamp=10.0))
    assert [f.labels for f in a.pop_frames()] == [{1: "object"}]


def test_queue_size_and_pose_history_follow_live_changes():
    """Both are ROS parameters that may change while the node runs: the assembler must read them live."""
    cfg = DpreconConfig()
    a = FrameAssembler(cfg)
    cfg.sync.queue_size = 2  # changed after the assembler was built, as a parameter callback does
    for i in range(5):
        feed(a, make_frame(stamp=10 + i * 0.5, T=moving(i)), skip=(cfg.topics.pose, "/tf"))
    assert a.counters.get("lost_queue_overflow_rgb") == 3
    cfg.sync.tf_buffer_s = 1.0
    for i in range(6):
        a.tf.add(cfg.topics.map_frame, "probe", 100.0 + i, np.eye(4))
    assert a.tf._stamps[(cfg.topics.map_frame, "probe")] == [104.0, 105.0]


def test_camera_info_with_nan_or_non_pinhole_k_is_refused(assembler):
    def nan_k(topic, msg):
        if topic == assembler.config.topics.camera_info:
            msg.k = np.full(9, np.nan)

    assert run(assembler, edit=nan_k) == []
    assert assembler.counters.get("bad_camera_info") >= 1 and assembler.intrinsics is None

    for field, value in (("fx", np.nan), ("d", np.nan)):  # one NaN is enough, in K or in the distortion
        one = FrameAssembler(DpreconConfig())

        def one_nan(topic, msg, one=one, field=field, value=value):
            if topic == one.config.topics.camera_info:
                if field == "fx":
                    msg.k = np.array([value, 0, 19.5, 0, 30.0, 15.5, 0, 0, 1])
                else:
                    msg.d = np.array([0.1, value, 0.0, 0.0, 0.0])
                    msg.distortion_model = "plumb_bob"

        assert run(one, edit=one_nan) == [], field
        assert one.counters.get("bad_camera_info") >= 1, field

    other = FrameAssembler(DpreconConfig())

    def skewed_last_row(topic, msg):
        if topic == other.config.topics.camera_info:
            msg.k = np.array([30.0, 0, 19.5, 0, 30.0, 15.5, 0.1, 0, 1])

    assert run(other, edit=skewed_last_row) == []
    assert other.counters.get("bad_camera_info") >= 1


def test_an_8000_px_square_frame_is_refused_before_decoding_by_default(assembler):
    topics = assembler.config.topics

    def huge(topic, msg):
        if topic in (topics.rgb, topics.depth, topics.instance, topics.camera_info):
            msg.width = msg.height = 8000  # the header claims it; nothing is decoded

    assert run(assembler, edit=huge) == []
    assert assembler.counters.get("lost_oversized_rgb") == 4  # the colour image loses the set
    assert assembler.counters.get("oversized_depth") == assembler.counters.get("oversized_instance") == 4
    assert assembler.counters.get("bad_camera_info") >= 1
    assert assembler.counters.get("lost_bad_rgb") == 0


@pytest.mark.parametrize(
    "text",
    [
        '{"1": {"name": "cup"}}',
        '{"1": null}',
        '{"1": 7}',
        '{"1": ""}',
        '{"x": "cup"}',
        '{"-1": "cup"}',
        '["cup"]',
        '{"1": "' + "a" * 200 + '"}',
    ],
)
def test_labels_that_are_not_id_to_string_are_refused(assembler, text):
    def bad(topic, msg):
        if topic == assembler.config.topics.labels:
            msg.data = text

    out = run(assembler, edit=bad)
    assert assembler.counters.get("bad_labels") == 4
    assert all(f.labels == {1: "object"} for f in out)  # never the refused value


def test_a_mask_with_thousands_of_ids_is_refused():
    cfg = DpreconConfig()
    cfg.frames.min_mask_pixels = 1
    a = FrameAssembler(cfg)
    frame = make_frame(stamp=10.0, size=(100, 60))
    frame.instance = np.arange(1, 6001, dtype=np.int32).reshape(60, 100) % 5000 + 1
    frame.labels = {i: "clutter" for i in range(1, 5001)}
    feed(a, frame)
    assert a.pop_frames(flush=True) == []
    assert a.counters.get("lost_too_many_instances") == 1
    assert a.counters.get("bad_labels") == 1  # 5000 labels exceed the same bound


def test_the_assembler_reports_the_pixels_it_holds(assembler):
    frame = make_frame(stamp=10.0)
    feed(assembler, frame, skip=(assembler.config.topics.instance,))  # colour and depth wait for their mask
    assert assembler.nbytes == frame.rgb.nbytes + frame.depth_m.nbytes
    assembler.pop_frames(flush=True)  # the colour image can never match now; the depth waits within its queue bound
    assert assembler.nbytes == frame.depth_m.nbytes


def test_queues_are_bounded_in_camera_time_not_only_in_count():
    cfg = DpreconConfig()
    cfg.sync.queue_s = 1.0
    a = FrameAssembler(cfg)
    for i in range(240):  # 4 s of colour images at 60 Hz, no depth or mask ever: the queue keeps 1 s of them
        frame = make_frame(stamp=10 + i / 60, T=moving(i, 0.001))
        feed(a, frame, skip=(cfg.topics.depth, cfg.topics.instance))
        a.pop_frames()
    assert 58 <= a.waiting_frames <= 61
    assert a.counters.get("lost_queue_overflow_rgb") + a.waiting_frames == 240 - a.counters.get("lost_unmatched_depth")
