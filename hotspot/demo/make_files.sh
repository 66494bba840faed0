#!/bin/sh
# Regenerates every file in hotspot/demo/files/ (demo content made for the hotspot).
# Needs: python3, ffmpeg (with libx264, libmp3lame, drawtext), espeak-ng, fonts-dejavu.
# Usage: sh hotspot/demo/make_files.sh        (run from anywhere)
# Encoders change between versions, so regenerated audio/video may differ by a few bytes;
# sizes and sha256 are computed when the demo pack is built (next `hotspot serve --demo`).
set -eu
HERE=$(cd "$(dirname "$0")" && pwd)
OUT="$HERE/files"
TMP=$(mktemp -d)
trap 'rm -rf "$TMP"' EXIT
mkdir -p "$OUT"
FONT=/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf
BOLD=/usr/share/fonts/truetype/dejavu/DejaVuSans-Bold.ttf
FF="ffmpeg -hide_banner -loglevel error -y"

# ---------------------------------------------------------------------------------------
# 1. PDFs: a minimal PDF writer (base-14 Helvetica, no embedded fonts, vector drawings).
# ---------------------------------------------------------------------------------------
python3 - "$OUT" <<'PY'
import sys, zlib
from pathlib import Path
OUT = Path(sys.argv[1])
W, H, M = 420, 595, 36  # A5 portrait, margin

def esc(s):
    return s.encode("cp1252").replace(b"\\", b"\\\\").replace(b"(", b"\\(").replace(b")", b"\\)")

def wrap(text, size, width):
    words, lines, line = text.split(), [], ""
    for w in words:
        cand = (line + " " + w).strip()
        if len(cand) * size * 0.49 > width and line:
            lines.append(line); line = w
        else:
            line = cand
    return lines + ([line] if line else [])

class Page:
    def __init__(self):
        self.ops, self.y = [], H - 70
    def text(self, x, y, s, size=10, bold=False, rgb=(0.1, 0.1, 0.1)):
        self.ops.append(b"BT %.2f %.2f %.2f rg /%s %d Tf %.1f %.1f Td (" % (*rgb, b"F2" if bold else b"F1", size, x, y) + esc(s) + b") Tj ET")
    def rect(self, x, y, w, h, rgb, stroke=False):
        self.ops.append(b"%.2f %.2f %.2f %s %.1f %.1f %.1f %.1f re %s" % (*rgb, b"RG" if stroke else b"rg", x, y, w, h, b"S" if stroke else b"f"))
    def line(self, x1, y1, x2, y2, rgb=(0.2, 0.2, 0.2), w=1.5):
        self.ops.append(b"%.2f %.2f %.2f RG %.1f w %.1f %.1f m %.1f %.1f l S" % (*rgb, w, x1, y1, x2, y2))
    def circle(self, cx, cy, r, rgb, stroke=False, w=1.5):
        k = 0.5523 * r
        p = b"%.1f %.1f m " % (cx + r, cy)
        for (a, b_, c, d, e, f) in [(cx + r, cy + k, cx + k, cy + r, cx, cy + r), (cx - k, cy + r, cx - r, cy + k, cx - r, cy),
                                    (cx - r, cy - k, cx - k, cy - r, cx, cy - r), (cx + k, cy - r, cx + r, cy - k, cx + r, cy)]:
            p += b"%.1f %.1f %.1f %.1f %.1f %.1f c " % (a, b_, c, d, e, f)
        col = b"%.2f %.2f %.2f %s" % (*rgb, b"RG" if stroke else b"rg")
        self.ops.append(col + b" %.1f w " % w + p + (b"S" if stroke else b"f"))
    # flowing layout
    def heading(self, s, size=15):
        for ln in wrap(s, size, W - 2 * M):
            self.text(M, self.y, ln, size, True, (0.05, 0.3, 0.2)); self.y -= size + 5
        self.y -= 4
    def para(self, s, size=10.5):
        for ln in wrap(s, size, W - 2 * M):
            self.text(M, self.y, ln, size); self.y -= size + 4
        self.y -= 6
    def bullets(self, items, size=10.5):
        for it in items:
            first = True
            for ln in wrap(it, size, W - 2 * M - 16):
                if first:
                    self.circle(M + 4, self.y + 3.5, 2.5, (0.05, 0.45, 0.3))
                self.text(M + 14, self.y, ln, size); self.y -= size + 4; first = False
            self.y -= 3
        self.y -= 5

def frame(page, n, total, footer):
    page.rect(0, H - 34, W, 34, (0.05, 0.35, 0.25))
    page.text(M, H - 22, "DEMO CONTENT", 11, True, (1, 1, 1))
    page.text(W - M - 150, H - 22, footer, 8, False, (0.9, 1, 0.95))
    page.line(M, 40, W - M, 40, (0.6, 0.6, 0.6), 0.5)
    page.text(M, 26, "Demo - Coalition library team - CC BY 4.0", 7.5, False, (0.4, 0.4, 0.4))
    page.text(W - M - 30, 26, "%d / %d" % (n, total), 8, False, (0.4, 0.4, 0.4))

def radio_tower(p, cx, y0):
    p.line(cx, y0, cx - 25, y0 - 70, w=2.5); p.line(cx, y0, cx + 25, y0 - 70, w=2.5)
    p.line(cx - 12, y0 - 35, cx + 12, y0 - 35); p.line(cx - 19, y0 - 52, cx + 19, y0 - 52)
    p.circle(cx, y0 + 4, 5, (0.8, 0.2, 0.1))
    for r in (16, 28, 40):
        p.circle(cx, y0 + 4, r, (0.8, 0.35, 0.1), stroke=True, w=1.2)
    for i, x in enumerate((cx - 120, cx + 120)):
        p.circle(x, y0 - 40, 14, (0.95, 0.75, 0.3)); p.rect(x - 14, y0 - 78, 28, 30, (0.95, 0.75, 0.3))

def map_path(p, x0, y0):
    p.rect(x0, y0, W - 2 * M, 120, (0.88, 0.95, 0.86))
    p.line(x0 + 10, y0 + 20, x0 + 90, y0 + 70, (0.1, 0.4, 0.8), 3); p.line(x0 + 90, y0 + 70, x0 + 200, y0 + 50, (0.1, 0.4, 0.8), 3)
    p.line(x0 + 200, y0 + 50, x0 + 330, y0 + 100, (0.1, 0.4, 0.8), 3)
    for (x, y) in ((40, 40), (140, 95), (260, 30), (300, 80)):
        p.circle(x0 + x, y0 + y, 6, (0.85, 0.2, 0.15))
    p.text(x0 + 8, y0 + 104, "river", 8, False, (0.1, 0.4, 0.8))

def notebook_camera(p, x0, y0):
    p.rect(x0, y0, 110, 140, (0.97, 0.95, 0.85)); p.rect(x0, y0, 110, 140, (0.3, 0.3, 0.3), stroke=True)
    for i in range(8):
        p.line(x0 + 10, y0 + 120 - 14 * i, x0 + 100, y0 + 120 - 14 * i, (0.6, 0.6, 0.7), 0.6)
    p.rect(x0 + 160, y0 + 30, 150, 90, (0.25, 0.25, 0.3)); p.rect(x0 + 180, y0 + 120, 40, 14, (0.25, 0.25, 0.3))
    p.circle(x0 + 235, y0 + 75, 30, (0.75, 0.8, 0.9)); p.circle(x0 + 235, y0 + 75, 16, (0.2, 0.3, 0.45))

def circle_of_people(p, cx, cy):
    import math
    p.circle(cx, cy, 40, (0.9, 0.85, 0.7))
    for i in range(8):
        a = 2 * math.pi * i / 8
        x, y = cx + 70 * math.cos(a), cy + 70 * math.sin(a)
        p.circle(x, y + 8, 9, (0.45, 0.3, 0.2)); p.circle(x, y - 10, 12, (0.1, 0.45, 0.55))

def write_pdf(name, title, pages):
    objs = [None, None, None,
            b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica /Encoding /WinAnsiEncoding >>",
            b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica-Bold /Encoding /WinAnsiEncoding >>"]
    kids = []
    for pg in pages:
        data = zlib.compress(b"\n".join(pg.ops), 9)
        objs.append(b"<< /Length %d /Filter /FlateDecode >>\nstream\n" % len(data) + data + b"\nendstream")
        objs.append(b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 %d %d] /Contents %d 0 R "
                    b"/Resources << /Font << /F1 4 0 R /F2 5 0 R >> >> >>" % (W, H, len(objs)))
        kids.append(len(objs))
    objs[0] = b"<< /Type /Catalog /Pages 2 0 R >>"
    objs[1] = b"<< /Type /Pages /Count %d /Kids [%s] >>" % (len(kids), b" ".join(b"%d 0 R" % k for k in kids))
    objs[2] = b"<< /Title (" + esc(title) + b") /Producer (hotspot demo make_files.sh) >>"
    out = bytearray(b"%PDF-1.4\n%\xe2\xe3\xcf\xd3\n")
    offsets = []
    for i, o in enumerate(objs, 1):
        offsets.append(len(out)); out += b"%d 0 obj\n" % i + o + b"\nendobj\n"
    xref = len(out)
    out += b"xref\n0 %d\n0000000000 65535 f \n" % (len(objs) + 1)
    out += b"".join(b"%010d 00000 n \n" % off for off in offsets)
    out += b"trailer\n<< /Size %d /Root 1 0 R /Info 3 0 R >>\nstartxref\n%d\n%%%%EOF\n" % (len(objs) + 1, xref)
    (OUT / name).write_bytes(bytes(out))

def build(name, title, footer, spec):
    pages = []
    for items in spec:
        p = Page()
        for kind, arg in items:
            if kind == "h": p.heading(arg)
            elif kind == "p": p.para(arg)
            elif kind == "b": p.bullets(arg)
            elif kind == "draw": arg(p, p.y); p.y -= 0
            elif kind == "gap": p.y -= arg
        pages.append(p)
    for i, p in enumerate(pages, 1):
        frame(p, i, len(pages), footer)
    write_pdf(name, title, pages)

build("radio-alerta-temprana.pdf", "Radio comunitaria para la alerta temprana (DEMO)", "Guía breve - radio y alerta", [
  [("h", "Radio comunitaria para la alerta temprana"),
   ("p", "Esta guía breve es un ejemplo de demostración. Resume cómo una comunidad puede usar su radio para avisar a tiempo cuando hay una amenaza en el territorio: la entrada de maquinaria, personas armadas, un incendio o una inundación."),
   ("draw", lambda p, y: radio_tower(p, W / 2, y - 30)), ("gap", 130),
   ("p", "La radio llega a quien no tiene teléfono ni internet. Con un plan acordado en asamblea, un mensaje corto puede movilizar a toda la comunidad en pocos minutos.")],
  [("h", "1. Acordar el plan en asamblea"),
   ("b", ["Quién vigila y quién transmite: nombrar a dos o tres operadores por turno.",
          "Qué es una alerta: definir juntos las señales (amarilla: atención; roja: actuar ya).",
          "A quién se avisa: autoridades propias, comunidades vecinas, organizaciones aliadas.",
          "Palabras clave: usar un código sencillo que todos conozcan, sin dar nombres ni lugares exactos al aire."]),
   ("h", "2. Preparar el equipo"),
   ("b", ["Radio o transmisor con batería de respaldo y panel solar.",
          "Lista de frecuencias y horarios de contacto, guardada en papel.",
          "Un cuaderno de registro: fecha, hora, qué se vio, quién avisó, qué se hizo."])],
  [("h", "3. Transmitir un mensaje de alerta"),
   ("p", "Un buen mensaje es corto y se repite dos veces: qué pasa, dónde (con el nombre que usa la comunidad), cuándo, y qué debe hacer cada familia."),
   ("b", ["No difundir rumores: confirmar con una segunda persona antes de dar la alerta roja.",
          "Después de la alerta, anotar todo en el cuaderno y guardar fotos si es seguro hacerlo.",
          "Revisar en asamblea qué funcionó y qué hay que mejorar."]),
   ("h", "4. Practicar"),
   ("p", "Hacer un simulacro cada pocos meses. La práctica hace que el plan funcione el día que de verdad se necesita.")],
])

build("documenting-evidence-safely.pdf", "Documenting evidence safely (DEMO)", "Short guide - evidence", [
  [("h", "Documenting evidence safely"),
   ("p", "This short guide is demo content. It shows how a community can record what happens on its land so that the record can later support a complaint, a conversation with a company or buyer, or a court case."),
   ("draw", lambda p, y: notebook_camera(p, M + 10, y - 150)), ("gap", 165),
   ("p", "Good evidence is accurate, complete and kept safe. Your own safety always comes first: never take a photo or a note if it puts you or others at risk.")],
  [("h", "What to record"),
   ("b", ["What happened, in your own words, as soon as possible.",
          "When: date and time. Where: the place name used by the community and, if you have one, a GPS point.",
          "Who saw it. Write down witnesses only with their consent, and keep their names separate.",
          "Photos or video that show the place, the damage and the date (a newspaper, a landmark).",
          "Any document: notices, permits, licence plates of machines, company names."]),
   ("h", "How to keep it safe"),
   ("b", ["Make two copies and keep them in different places.",
          "Protect phones with a screen lock; use encrypted apps to share.",
          "Keep a simple register of every item: number, date, who collected it, where it is stored."])],
  [("h", "Using the evidence"),
   ("p", "Evidence gathered by communities can feed a complaint to the authorities, a letter to a company or its buyers and investors, a report to a human rights body, or strategic litigation with lawyers you trust."),
   ("b", ["Decide together what to share, with whom and when.",
          "Ask an allied legal organisation what format is needed before a case.",
          "Record what you shared and the answers you received."]),
   ("p", "Remember: documentation is collective work. Agree on roles, train together, and review the process after each incident.")],
])

build("guia-patrulha-territorial.pdf", "Guia de patrulha territorial (DEMO)", "Guia breve - patrulhas", [
  [("h", "Guia de patrulha territorial"),
   ("p", "Conteúdo de demonstração. As patrulhas comunitárias percorrem o território para vigiar os limites, registrar invasões e mostrar que a terra tem donos que a cuidam."),
   ("draw", lambda p, y: map_path(p, M, y - 125)), ("gap", 140),
   ("h", "Antes de sair"),
   ("b", ["Planejar a rota no mapa comunitário e avisar a assembleia.",
          "Formar grupos de pelo menos três pessoas, com uma pessoa responsável pelo registro.",
          "Levar GPS ou celular carregado, caderno, água, rádio e kit de primeiros socorros."])],
  [("h", "Durante a patrulha"),
   ("b", ["Registrar cada ponto importante: marcos, trilhas novas, desmatamento, acampamentos.",
          "Anotar data, hora, ponto de GPS e uma foto, quando for seguro.",
          "Evitar confrontos: observar, registrar e sair. A segurança do grupo vem primeiro."]),
   ("h", "Depois da patrulha"),
   ("b", ["Passar os pontos para o mapa e o registro para o livro de patrulha.",
          "Informar a assembleia e decidir juntos os próximos passos.",
          "Se houver uma ameaça, acionar a rede de alerta e as organizações aliadas."])],
])

build("atelier-protocole-communautaire.pdf", "Atelier : construire notre protocole communautaire (DEMO)", "Atelier - protocole", [
  [("h", "Atelier : construire notre protocole communautaire"),
   ("p", "Contenu de démonstration. Un protocole communautaire dit, avec les mots de la communauté, qui elle est, comment elle décide, et comment les entreprises, l'État ou les projets doivent la consulter avant d'agir sur son territoire."),
   ("draw", lambda p, y: circle_of_people(p, W / 2, y - 85)), ("gap", 200),
   ("p", "Cet atelier de deux jours aide un groupe à écrire une première version, à la discuter en assemblée et à la faire connaître.")],
  [("h", "Jour 1 : qui sommes-nous ?"),
   ("b", ["Récit de l'histoire du territoire et de ses usages, avec les anciens et les jeunes.",
          "Carte parlante : lieux sacrés, zones de culture, sources d'eau, limites.",
          "Nos façons de décider : assemblée, autorités propres, rôle des femmes et des jeunes."]),
   ("h", "Jour 2 : nos règles pour la consultation"),
   ("b", ["Ce que nous attendons d'une consultation libre, préalable et informée.",
          "Qui parle au nom de la communauté, et dans quelles langues.",
          "Comment nous partageons le protocole : autorités, entreprises, alliés.",
          "Plan de suivi : qui révise le protocole et quand."])],
])
PY

# ---------------------------------------------------------------------------------------
# 2. Audio: espeak-ng, then MP3 at 32 kbit/s mono.
# ---------------------------------------------------------------------------------------
speak() {  # speak VOICE OUTPUT.mp3 TEXT
    espeak-ng -v "$1" -s 150 -w "$TMP/speech.wav" "$3"
    $FF -i "$TMP/speech.wav" -ac 1 -ar 22050 -c:a libmp3lame -b:a 32k -map_metadata -1 "$OUT/$2"
}
speak es-419 alerta-radio-es.mp3 "Atención, atención. Esta es la red de alerta comunitaria. Este es un mensaje de demostración. Se ha visto maquinaria entrando por el camino del río, cerca del segundo puente. Alerta amarilla. Las familias del sector bajo deben estar atentas. Los vigilantes van a confirmar y volveremos a informar en treinta minutos. Repito: alerta amarilla en el camino del río."
speak pt-br chamada-alerta-pt.mp3 "Atenção, comunidade. Esta é uma chamada de demonstração da patrulha territorial. A patrulha encontrou uma trilha nova e árvores cortadas perto do limite norte. Ninguém deve ir sozinho para essa área. A assembleia vai se reunir hoje à noite na escola para decidir os próximos passos. Fiquem atentos ao rádio."
speak en-us reporting-incident-en.mp3 "This is a demonstration recording. When something happens on your land, write it down as soon as you can. What happened? When, the date and the time. Where, using the name your community uses. Who saw it. Take a photo only if it is safe. Keep two copies of your notes in different places, and share them with the people your community has chosen."
speak fr-fr signaler-incident-fr.mp3 "Ceci est un enregistrement de démonstration. Quand quelque chose se passe sur votre territoire, notez-le dès que possible. Que s'est-il passé ? Quand, la date et l'heure. Où, avec le nom utilisé par la communauté. Qui l'a vu. Prenez une photo seulement si c'est sans danger. Gardez deux copies de vos notes dans deux endroits différents."

# ---------------------------------------------------------------------------------------
# 3. Images: infographics drawn with ffmpeg (color source + drawbox + drawtext).
# ---------------------------------------------------------------------------------------
# t NAME TEXT: write TEXT to a file used with drawtext's textfile= (no escaping needed).
t() { printf '%s' "$2" > "$TMP/$1.txt"; }
dt() {  # dt NAME X Y SIZE COLOR [bold] -> a drawtext filter
    f=$FONT; [ "${6:-}" = bold ] && f=$BOLD
    printf "drawtext=fontfile=%s:textfile=%s:expansion=none:x=%s:y=%s:fontsize=%s:fontcolor=%s" "$f" "$TMP/$1.txt" "$2" "$3" "$4" "$5"
}
png() {  # png OUTPUT FILTERS
    $FF -f lavfi -i "color=c=0xF4F1E8:s=640x360:d=1" -frames:v 1 -vf "$2" -pix_fmt rgb24 "$OUT/$1"
}

# Early-warning chain (Spanish)
t ew_title "Cadena de alerta temprana"
t ew1 "1. Ver"; t ew1b "Vigilantes
observan"
t ew2 "2. Avisar"; t ew2b "Radio
comunitaria"
t ew3 "3. Alertar"; t ew3b "Red y
aliados"
t ew4 "4. Actuar"; t ew4b "Plan de la
asamblea"
t arrow "→"; t demo "DEMO CONTENT"
F="drawbox=x=0:y=0:w=640:h=64:color=0x1B5E3F:t=fill,$(dt ew_title 24 16 30 white bold)"
x=20
for i in 1 2 3 4; do
    F="$F,drawbox=x=$x:y=120:w=128:h=150:color=0xE8A33D:t=fill,$(dt ew$i $((x+10)) 140 20 0x222222 bold),$(dt ew${i}b $((x+12)) 190 15 0x222222)"
    [ $i -lt 4 ] && F="$F,$(dt arrow $((x+131)) 175 26 0x1B5E3F bold)"
    x=$((x+158))
done
F="$F,$(dt demo 24 322 16 0x8A1C1C bold)"
png cadena-alerta-temprana.png "$F"

# Patrol safety checklist (Portuguese)
t pc_title "Patrulha segura: lista"
t pc1 "Rota combinada com a assembleia"
t pc2 "Grupo de 3 pessoas ou mais"
t pc3 "GPS ou celular carregado"
t pc4 "Rádio e horário de contato"
t pc5 "Caderno, água, primeiros socorros"
F="drawbox=x=0:y=0:w=640:h=64:color=0x1B5E3F:t=fill,$(dt pc_title 24 16 30 white bold)"
y=86
for i in 1 2 3 4 5; do
    F="$F,drawbox=x=40:y=$y:w=30:h=30:color=0x1B5E3F:t=4,$(dt pc$i 90 $((y+4)) 20 0x222222)"
    y=$((y+44))
done
F="$F,$(dt demo 24 322 16 0x8A1C1C bold)"
png patrulha-segura.png "$F"

# Five digital security habits (English)
t ds_title "5 digital security habits"
t ds1 "1  Lock your phone with a PIN"
t ds2 "2  Update apps and the system"
t ds3 "3  Use end-to-end encrypted chat"
t ds4 "4  Keep backups in two places"
t ds5 "5  Think before you share a location"
F="drawbox=x=0:y=0:w=640:h=64:color=0x243B6B:t=fill,$(dt ds_title 24 16 30 white bold)"
y=84
for i in 1 2 3 4 5; do
    F="$F,drawbox=x=24:y=$y:w=592:h=38:color=0xDCE4F2:t=fill,$(dt ds$i 40 $((y+8)) 20 0x1A1A1A)"
    y=$((y+46))
done
F="$F,$(dt demo 24 322 16 0x8A1C1C bold)"
png digital-security-habits.png "$F"

# From evidence to justice (French)
t ej_title "De la preuve à la justice"
t ej1 "Documenter"; t ej2 "Protéger"; t ej3 "Vérifier"; t ej4 "Agir"
t ej4b "plainte · entreprise · tribunal"
F="drawbox=x=0:y=0:w=640:h=64:color=0x5B2C6F:t=fill,$(dt ej_title 24 16 30 white bold)"
x=24
for i in 1 2 3 4; do
    F="$F,drawbox=x=$x:y=$((250-36*i)):w=140:h=$((36*i)):color=0x9B6FB0:t=fill,$(dt ej$i $((x+8)) $((220-36*i)) 20 0x222222 bold)"
    x=$((x+152))
done
F="$F,$(dt ej4b 380 262 15 0x222222),$(dt demo 24 322 16 0x8A1C1C bold)"
png preuve-justice.png "$F"

# ---------------------------------------------------------------------------------------
# 4. Videos: 426x240 H.264 baseline + AAC, narrated with espeak-ng, faststart.
# ---------------------------------------------------------------------------------------
video() {  # video OUTPUT SECONDS VOICE NARRATION FILTERS
    espeak-ng -v "$3" -s 150 -w "$TMP/narration.wav" "$4"
    $FF -f lavfi -i "color=c=0x1B5E3F:s=426x240:r=15:d=$2" -i "$TMP/narration.wav" \
        -filter_complex "[0:v]noise=alls=6:allf=t,$5[v];[1:a]apad,atrim=0:$2,aresample=44100[a]" -map "[v]" -map "[a]" \
        -c:v libx264 -profile:v baseline -level 3.0 -pix_fmt yuv420p -b:v 280k -maxrate 350k -bufsize 700k \
        -c:a aac -b:a 48k -ac 1 -t "$2" -movflags +faststart -map_metadata -1 "$OUT/$1"
}
# The poster (thumbnail) is one frame of the video, as a small JPEG.
poster() { $FF -ss "$2" -i "$OUT/$1" -frames:v 1 -q:v 5 "$OUT/$3"; }

t v1_title "Cadena de alerta temprana"; t v1_sub "Demo - red comunitaria"
t v1a "1. Ver: los vigilantes observan"; t v1b "2. Avisar por la radio"
t v1c "3. Alertar a la red y aliados"; t v1d "4. Actuar según el plan"
on() { printf ":enable='gte(t,%s)'" "$1"; }
F="$(dt v1_title 20 20 24 white bold),$(dt v1_sub 20 54 14 0xCDE8D8),$(dt demo 300 214 12 0xFFD27A bold)"
F="$F,$(dt v1a 30 90 17 white)$(on 2),$(dt v1b 30 120 17 white)$(on 4.5),$(dt v1c 30 150 17 white)$(on 7),$(dt v1d 30 180 17 white)$(on 9.5)"
F="$F,drawbox=x='10+mod(t*60\,400)':y=228:w=14:h=6:color=0xE8A33D:t=fill"
video cadena-alerta-temprana.mp4 13 es-419 "Cadena de alerta temprana. Uno: los vigilantes observan. Dos: avisan por la radio. Tres: la radio alerta a la red y a los aliados. Cuatro: todos actúan según el plan de la asamblea." "$F"
poster cadena-alerta-temprana.mp4 11 cadena-alerta-temprana.jpg

t v2_title "Mapping with GPS in 4 steps"; t v2_sub "Demo - community monitoring"
t v2a "1. Agree what to map"; t v2b "2. Mark the point with GPS"
t v2c "3. Add a photo and a note"; t v2d "4. Share at the assembly"
F="$(dt v2_title 20 20 22 white bold),$(dt v2_sub 20 52 14 0xCDE8D8),$(dt demo 300 214 12 0xFFD27A bold)"
F="$F,$(dt v2a 30 90 17 white)$(on 2),$(dt v2b 30 120 17 white)$(on 5),$(dt v2c 30 150 17 white)$(on 8),$(dt v2d 30 180 17 white)$(on 10.5)"
F="$F,drawbox=x=360:y=100:w=44:h=70:color=0x333333:t=fill,drawbox=x=366:y=108:w=32:h=44:color=0x9AD1B0:t=fill"
F="$F,drawbox=x=378:y='120+10*sin(t*3)':w=8:h=8:color=0xD03A2F:t=fill"
video mapping-gps-steps.mp4 14 en-us "Mapping with GPS in four steps. One: agree together what to map. Two: mark the point with the GPS. Three: add a photo and a short note. Four: share the map at the assembly." "$F"
poster mapping-gps-steps.mp4 12 mapping-gps-steps.jpg

# ---------------------------------------------------------------------------------------
# 5. Templates and plans: plain UTF-8 text and CSV, written from sibling files.
# ---------------------------------------------------------------------------------------
# The text templates are kept verbatim in hotspot/demo/files/ (they are their own source):
# incident-report-template-en.txt, formulario-incidente-es.txt, patrol-log-template.csv,
# community-protocol-template.txt, equipment-inventory.csv, company-letter-template.txt,
# workshop-plan-protection.txt, plan-formacion-radio.txt, practice-waypoints.gpx
echo "Done. Check the demo builds: content-pack build $HERE --catalog $HERE/catalog.csv --key $HERE/demo-signing.key --out \$(mktemp -d) --version 1"
