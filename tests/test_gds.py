"""The GDS information model: the vendored Part 12 NodeSet loads into a real asyncua server and exposes the
Directory methods certmgr's GDS will serve, with the GDS data types usable on the wire side."""

from __future__ import annotations

import asyncio
import hashlib

from certmgr.opcua import gds_model

VENDORED_SHA256 = "1c807b5a689cc51b0575fe16f0eb1efc45233598be3e0e49ee4b7113026abc88"


def test_vendored_nodeset_is_the_recorded_file():
    assert hashlib.sha256(gds_model.NODESET.read_bytes()).hexdigest() == VENDORED_SHA256


def test_gds_nodeset_loads_and_names_every_directory_method():
    from asyncua import Server, ua

    async def run():
        server = Server()
        await server.init()
        idx = await gds_model.load_gds_model(server)
        directory = server.get_node(ua.NodeId(gds_model.DIRECTORY, idx))
        names = {}
        for child in await directory.get_children():
            names[(await child.read_browse_name()).Name] = child.nodeid.Identifier
        record = ua.ApplicationRecordDataType(ApplicationUri="urn:test:app", ApplicationType=ua.ApplicationType.Server)
        return idx, (await directory.read_browse_name()).Name, names, record

    idx, name, names, record = asyncio.run(run())
    assert idx > 0 and name == "Directory"
    for method, number in gds_model.METHODS.items():
        assert names.get(method) == number, method
    assert record.ApplicationUri == "urn:test:app"
