from dprecon_ros.core.schedules import schedule_value


def test_schedule_holds_then_ramps_then_holds():
    s = [100, 1.0, 0.0, 200]
    assert schedule_value(s, 0) == 1.0 and schedule_value(s, 100) == 1.0
    assert schedule_value(s, 150) == 0.5 and schedule_value(s, 175) == 0.25
    assert schedule_value(s, 200) == 0.0 and schedule_value(s, 10_000) == 0.0


def test_a_number_is_a_constant_and_a_zero_length_ramp_steps():
    assert schedule_value(0.3, 12345) == 0.3
    assert schedule_value([5, 2.0, 4.0, 5], 4) == 2.0 and schedule_value([5, 2.0, 4.0, 5], 6) == 4.0
