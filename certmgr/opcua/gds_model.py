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
# Directory/CertificateGroups/DefaultApplicationGroup, its TrustList (a FileType) and the methods served
DEFAULT_APPLICATION_GROUP = 615
TRUST_LIST = 616
TRUST_LIST_METHODS = {"Open": 622, "Close": 625, "Read": 627, "GetPosition": 632, "SetPosition": 635}
RSA_SHA256_APPLICATION_CERTIFICATE_TYPE = 12560  # namespace 0


async def load_gds_model(server) -> int:
    """Import the GDS NodeSet into ``server`` (an initialised asyncua Server), make its data types
    (ApplicationRecordDataType...) known to asyncua, and return the GDS namespace index."""
    await server.import_xml(str(NODESET))
    idx = await server.get_namespace_index(GDS_NAMESPACE)
    await _fill_default_encodings(server, idx)
    await server.load_data_type_definitions()
    return idx


async def _fill_default_encodings(server, idx: int) -> None:
    """asyncua 2.1.0 workaround (the one place): its XML importer takes a structure's DefaultEncodingId only from
    a HasEncoding reference written on the DataType element, but the GDS NodeSet writes it on the encoding object
    ("Default Binary", inverse direction). The DataTypeDefinition then says ns=0;i=0, every asyncua peer that
    reads it (this server and remote asyncua clients, via load_data_type_definitions) registers the class with a
    null encoding, and an ApplicationRecordDataType travels as an empty ExtensionObject. Fill it in from the
    address space, where the importer did add both directions of the reference, and re-register the classes
    import_xml already made (load_data_type_definitions skips a class it knows)."""
    from asyncua import ua

    structure = server.get_node(ua.ObjectIds.Structure)
    pending = [structure]
    while pending:
        node = pending.pop()
        for child in await node.get_children(refs=ua.ObjectIds.HasSubtype, nodeclassmask=ua.NodeClass.DataType):
            pending.append(child)
            if child.nodeid.NamespaceIndex != idx:
                continue
            try:
                sdef = await child.read_data_type_definition()
            except ua.UaError:
                continue
            if not isinstance(sdef, ua.StructureDefinition) or not sdef.DefaultEncodingId.is_null():
                continue
            for encoding in await child.get_referenced_nodes(refs=ua.ObjectIds.HasEncoding, direction=ua.BrowseDirection.Forward):
                if (await encoding.read_browse_name()).Name == "Default Binary":
                    sdef.DefaultEncodingId = encoding.nodeid
                    await child.write_attribute(ua.AttributeIds.DataTypeDefinition, ua.DataValue(ua.Variant(sdef)))
                    name = (await child.read_browse_name()).Name
                    known = getattr(ua, name, None)
                    if known is not None and getattr(known, "data_type", None) == child.nodeid:
                        ua.register_extension_object(name, encoding.nodeid, known, child.nodeid)
                    break
