"""A project's page shows its open PEP 694 upload sessions to its owners, and to nobody else."""

from __future__ import annotations

from tests.builders import build_wheel
from tests.conftest import LiveServer
from tests.index.sessions_api import add_file, delete, open_session

from .conftest import HTML, make_project, sign_in


def test_owners_see_the_projects_open_sessions(ui_server: LiveServer) -> None:
    make_project(ui_server, "sena", "sena-lib")
    make_project(ui_server, "olek", "olek-lib")
    token = ui_server.token("sena", "prod")
    with ui_server.client() as http:
        session = open_session(http, token, "sena-lib", "2.0")
        add_file(http, token, session, *build_wheel("sena-lib", "2.0"))
        stage = session["links"]["stage"] + "sena-lib/"
    with ui_server.client() as owner:
        sign_in(owner, "sena")
        page = owner.get("/prod/project/sena-lib/", headers=HTML)
        assert page.status_code == 200
        assert "Open upload sessions" in page.text
        assert "<td>2.0</td><td>open</td><td>sena</td><td>1</td>" in page.text
        assert f'href="{stage}"' in page.text
    with ui_server.client() as other:
        sign_in(other, "olek")
        assert "Open upload sessions" not in other.get("/prod/project/sena-lib/", headers=HTML).text
    with ui_server.client() as anonymous:
        page = anonymous.get("/prod/project/sena-lib/", headers=HTML)
        assert session["session-token"] not in page.text
    with ui_server.client() as http:
        assert delete(http, session["links"]["session"], token).status_code == 204
    with ui_server.client() as owner:
        sign_in(owner, "sena")
        assert "Open upload sessions" not in owner.get("/prod/project/sena-lib/", headers=HTML).text
