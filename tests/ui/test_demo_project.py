"""The demo project opened by `inspector gui --demo` is ready to label."""

from inspector.core.store import Project
from inspector.ui.main_window import write_demo


def test_demo_project_has_its_classes_and_no_labels(tmp_path):
    project_path = write_demo(tmp_path / "demo")
    with Project.open(project_path) as project:
        names = [c.name for c in project.classes()]
        assert names[0] == "ok" and {"scratch", "crack"} <= set(names)
        assert [c.key for c in project.classes()][:2] == ["1", "2"]
        assert project.latest_labels() == {}
    # a second call reuses the images and the project
    assert write_demo(tmp_path / "demo") == project_path
