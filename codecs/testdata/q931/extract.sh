#!/bin/sh
# Regenerates vectors.tsv from the shared corpus captures with tshark (TShark 4.0.17 originally).
# Usage: ./extract.sh [CORPUS_PCAP_DIR]
set -eu
corpus=${1:-/work/shared/corpora/pcap}
out=vectors.tsv
printf '# source\tframe\ttshark_status\tmessage_type\tcall_ref\tcall_ref_flag\tcalled\tcalling\tcause\ttpkt_hex\n' >"$out"
for f in ndpi/h323.pcap wireshark-samplecaptures/rtp_example.pcap; do
    tshark -r "$corpus/$f" -Y q931 -T fields -E separator=/t -E occurrence=f \
        -e frame.number -e _ws.malformed -e q931.message_type -e q931.call_ref \
        -e q931.call_ref_flag -e q931.called_party_number.digits \
        -e q931.calling_party_number.digits -e q931.cause_value \
        -e tcp.reassembled.data -e tcp.payload 2>/dev/null |
    awk -F '\t' -v OFS='\t' -v src="$f" '{
        status = ($2 == "") ? "clean" : "malformed";
        hex = ($9 == "") ? $10 : $9;
        for (i = 6; i <= 8; i++) if ($i == "") $i = "-";
        print src, $1, status, $3, $4, $5, $6, $7, $8, hex
    }' >>"$out"
done
