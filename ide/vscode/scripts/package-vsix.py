#!/usr/bin/env python3
"""Packs the extension into a .vsix (a zip: [Content_Types].xml,
extension.vsixmanifest, extension/...) without @vscode/vsce.
Usage: package-vsix.py OUT.vsix  (run in ide/vscode after npm ci and tsc)."""
import json, os, sys, zipfile
from xml.sax.saxutils import escape

out = sys.argv[1]
pkg = json.load(open("package.json"))
files = ["package.json", "media/tether.svg"]
for root in ["out", "node_modules/vscode-jsonrpc"]:
    for d, _, fs in os.walk(root):
        files += [os.path.join(d, f) for f in sorted(fs)]
for extra in ["README.md", "LICENSE"]:
    if os.path.exists(extra):
        files.append(extra)
manifest = f"""<?xml version="1.0" encoding="utf-8"?>
<PackageManifest Version="2.0.0" xmlns="http://schemas.microsoft.com/developer/vsx-schema/2011" xmlns:d="http://schemas.microsoft.com/developer/vsx-schema-design/2011">
  <Metadata>
    <Identity Language="en-US" Id="{pkg['name']}" Version="{pkg['version']}" Publisher="{pkg['publisher']}" />
    <DisplayName>{escape(pkg['displayName'])}</DisplayName>
    <Description xml:space="preserve">{escape(pkg['description'])}</Description>
    <Categories>{','.join(pkg.get('categories', []))}</Categories>
    <GalleryFlags>Public</GalleryFlags>
    <Properties>
      <Property Id="Microsoft.VisualStudio.Code.Engine" Value="{pkg['engines']['vscode']}" />
      <Property Id="Microsoft.VisualStudio.Code.ExtensionKind" Value="workspace" />
    </Properties>
  </Metadata>
  <Installation><InstallationTarget Id="Microsoft.VisualStudio.Code"/></Installation>
  <Dependencies/>
  <Assets>
    <Asset Type="Microsoft.VisualStudio.Code.Manifest" Path="extension/package.json" Addressable="true" />
  </Assets>
</PackageManifest>
"""
types = """<?xml version="1.0" encoding="utf-8"?>
<Types xmlns="http://schemas.openxmlformats.org/package/2006/content-types">
<Default Extension=".json" ContentType="application/json"/><Default Extension=".js" ContentType="application/javascript"/>
<Default Extension=".svg" ContentType="image/svg+xml"/><Default Extension=".md" ContentType="text/markdown"/>
<Default Extension=".ts" ContentType="text/plain"/><Default Extension=".map" ContentType="application/json"/>
<Default Extension=".txt" ContentType="text/plain"/><Default Extension=".vsixmanifest" ContentType="text/xml"/>
<Default Extension=".xml" ContentType="text/xml"/>
</Types>
"""
tmp = out + ".tmp"
with zipfile.ZipFile(tmp, "w", zipfile.ZIP_DEFLATED) as z:
    z.writestr("[Content_Types].xml", types)
    z.writestr("extension.vsixmanifest", manifest)
    for f in files:
        z.write(f, "extension/" + f)
os.replace(tmp, out)
print(f"{out}: {len(files)} files")
