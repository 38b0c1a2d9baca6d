"""The prior through the node: with weights it runs and `~/edit_object` edits one object end to end; without
weights the node says the prior is off and still publishes the map."""

from __future__ import annotations

from pathlib import Path
from urllib.parse import unquote, urlparse

import numpy as np
import pytest
from action_msgs.msg import GoalStatus
from visualization_msgs.msg import Marker

from dprecon_ros.testing.markers import replay_markers
from dprecon_ros.testing.ros_graph import RosGraph, params, sim_params

pytestmark = pytest.mark.ros

VIEWS = 6
TOY = {  # the full preset at toy size: seconds on a CPU
    "reconstruction.backend": "full",
    "reconstruction.period_s": 0.0,
    "topics.image_qos": "reliable",
    "tsdf.object_voxel_m": 0.02,
    "geometry.cpu_preset": False,
    "geometry.iterations": 10,
    "geometry.rays_per_batch": 64,
    "geometry.object_resolution": 16,
    "geometry.background_resolution": 16,
    "geometry.feature_resolution": 8,
    "geometry.background_patches": 1,
    "geometry.patch_size": 4,
    "prior.cpu_preset": False,
    "prior.iterations": 4,
    "prior.views_per_step": 1,
    "prior.render_size": 16,
    "prior.latent_size": 16,
    "prior.samples_per_ray": 12,
    "prior.guide_samples": 8,
    "prior.rays_per_batch": 32,
    "prior.visibility_resolution": 24,
    "prior.visibility_rays_per_image": 100,
    "prior.visibility_samples_per_ray": 12,
    "texture.cpu_preset": False,
    "texture.object_size": 32,
    "texture.background_size": 64,
    "texture.sds_iterations": 2,
    "texture.render_size": 32,
}


@pytest.fixture(scope="module")
def two_nodes(tmp_path_factory, tiny_checkpoint):
    """One simulator feeding two nodes: `with_prior` has a (tiny, random) checkpoint, `no_weights` has none."""
    tmp = tmp_path_factory.mktemp("prior_graph")
    graph = RosGraph(tmp)
    with_prior = {**TOY, "prior.model": str(tiny_checkpoint), "reconstruction.export_dir": str(tmp / "export")}
    graph.start("dprecon_node", *params(with_prior), "-r", "__node:=with_prior", name="with_prior")
    graph.start("dprecon_node", *params({**TOY, "prior.model": str(tmp / "no_weights")}), "-r", "__node:=no_weights", name="no_weights")
    sim = graph.start("dprecon_sim", *sim_params(VIEWS, sim__width=160, sim__height=120, wait_for_subscribers_s=60.0))
    try:
        assert sim.wait(timeout=180) == 0, graph.logs()
        yield graph, tmp
    finally:
        graph.close()


def mesh_resources_shown(client) -> dict[int, str]:
    """Object id -> URI of the MESH_RESOURCE markers the ~/markers replay ends with."""
    shown = replay_markers(client.markers_received)
    return {m.id: m.mesh_resource for m in shown.values() if m.ns == "meshes" and m.type == Marker.MESH_RESOURCE and m.id != 0}


def client_of(graph: RosGraph, name: str):
    from dprecon_ros.testing.graph_client import DpreconClient

    return DpreconClient(node_name=name, client_name=f"client_{name}_{graph.domain}", context=graph.context)


def test_without_weights_the_status_says_the_prior_is_off_and_the_map_is_published(two_nodes):
    graph, _ = two_nodes
    client = client_of(graph, "no_weights")
    try:
        assert client.wait_for_keyframes_settled(minimum=VIEWS - 2, settle_s=1.0, timeout_s=60) >= VIEWS - 2
        result = client.reconstruct(timeout_s=300)
        assert result.success and result.objects >= 3, result.message + graph.logs()
        assert client.spin_until(lambda: client.status is not None and client.status.prior.startswith("off: no checkpoint"), 10), (
            client.status
        )
        assert client.spin_until(lambda: client.objects is not None and len(client.objects.objects) >= 3, 10)
        assert all(len(o.vertex_observed) == 0 and o.generated_share == 0.0 for o in client.objects.objects)
        # textured, but no file anywhere viewers could load: no URI, the markers carry the texture's colours
        assert all(o.mesh_uri == "" and 0.0 < o.texture_observed_share <= 1.0 for o in client.objects.objects)

        def meshes() -> list[Marker]:
            return [m for m in replay_markers(client.markers_received).values() if m.ns == "meshes"]

        assert client.spin_until(lambda: len(meshes()) >= len(client.objects.objects), 10), meshes()
        assert all(m.type == Marker.TRIANGLE_LIST for m in meshes())
        handle = client.send_edit(client.objects.objects[0].id, "a teddy bear")  # accepted, then refused with the reason
        status, edit = client.wait_result(handle, 120) if handle.accepted else (None, None)
        assert handle.accepted and status == GoalStatus.STATUS_ABORTED and "prior cannot run" in edit.message, edit
    finally:
        client.close()


def test_the_prior_runs_and_edit_object_changes_that_object_only(two_nodes):
    graph, _ = two_nodes
    client = client_of(graph, "with_prior")
    try:
        assert client.wait_for_keyframes_settled(minimum=VIEWS - 2, settle_s=1.0, timeout_s=60) >= VIEWS - 2
        result = client.reconstruct(timeout_s=300)
        assert result.success, result.message + graph.logs()
        assert client.spin_until(lambda: client.status is not None and client.status.prior.startswith("on: stable-diffusion"), 10)
        assert client.spin_until(lambda: client.objects is not None and len(client.objects.objects) >= 3, 10)
        before = {o.id: np.array([[p.x, p.y, p.z] for p in o.mesh.vertices]) for o in client.objects.objects}
        assert all(len(o.vertex_observed) == len(o.mesh.vertices) for o in client.objects.objects)
        uris = {o.id: o.mesh_uri for o in client.objects.objects}
        assert all(uri.startswith("file://") and Path(unquote(urlparse(uri).path)).is_file() for uri in uris.values()), uris
        assert client.spin_until(lambda: mesh_resources_shown(client) == uris, 10), (mesh_resources_shown(client), uris)
        target = sorted(before)[0]
        rejected = client.send_edit(9999, "a teddy bear")
        assert not rejected.accepted
        handle = client.send_edit(target, "a teddy bear")
        assert handle.accepted
        status, edit = client.wait_result(handle, 300)
        assert status == GoalStatus.STATUS_SUCCEEDED and edit.success, edit.message + graph.logs()

        def republished() -> bool:
            objs = {o.id: o for o in client.objects.objects}
            mesh = np.array([[p.x, p.y, p.z] for p in objs[target].mesh.vertices])
            return mesh.shape != before[target].shape or not np.allclose(mesh, before[target])

        assert client.spin_until(republished, 30), "the edited object was not republished with a new mesh"
        new_uris = {o.id: o.mesh_uri for o in client.objects.objects}
        assert new_uris[target] != uris[target] and Path(unquote(urlparse(new_uris[target]).path)).is_file()
        assert not Path(unquote(urlparse(uris[target]).path)).exists()  # the old version's file is gone
        assert all(new_uris[oid] == uris[oid] for oid in uris if oid != target)
        assert client.spin_until(lambda: mesh_resources_shown(client) == new_uris, 10)
        after = {o.id: np.array([[p.x, p.y, p.z] for p in o.mesh.vertices]) for o in client.objects.objects}
        for oid in before:
            if oid != target:
                assert after[oid].shape == before[oid].shape and np.allclose(after[oid], before[oid])  # the others untouched
        assert "edited [" in graph.logs()

        other = sorted(before)[1]  # a prompt override: the next run refits that object alone
        answer = client.set_prompt(other, "a  red\nteddy bear")
        assert answer.success and "red teddy bear" in answer.message, answer.message
        result = client.reconstruct(timeout_s=300)
        assert result.success and result.refitted == 1, result
        assert client.set_prompt(other, "").success  # cleared: back to the template, refitted again
    finally:
        client.close()
