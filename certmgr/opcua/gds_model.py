"""The GDS information model (Part 12) loaded into an asyncua server: the vendored NodeSet and its node ids.

asyncua is imported by the caller (lazily, inside commands); this module only names the file and the nodes.
"""

from __future__ import annotations

from pathlib import Path

NODESET = Path(__file__).with_name("nodesets") / "Opc.Ua.Gds.NodeSet2.xml"
GDS_NAMESPACE = "http://opcfoundation.org/UA/GDS/"

# numeric ids inside GDS_NAMESPACE (Opc.Ua.Gds.NodeSet2.xml 1.05.07)
DIRECTORY = 141
METHODS = {
    "FindApplications": 143, "RegisterApplication": 146, "UpdateApplication": 200, "UnregisterApplication": 149,
    "GetApplication": 216, "QueryApplications": 992, "QueryServers": 151, "StartSigningRequest": 157,
    "StartNewKeyPairRequest": 154, "FinishRequest": 163, "RevokeCertificate": 15005, "GetCertificateGroups": 508,
    "GetCertificates": 174, "GetTrustList": 204, "GetCertificateStatus": 225, "CheckRevocationStatus": 177,
}


async def load_gds_model(server) -> int:
    """Import the GDS NodeSet into ``server`` (an initialised asyncua Server), make its data types
    (ApplicationRecordDataType...) known to asyncua, and return the GDS namespace index."""
    await server.import_xml(str(NODESET))
    await server.load_data_type_definitions()
    return await server.get_namespace_index(GDS_NAMESPACE)
