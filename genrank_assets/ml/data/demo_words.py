"""The vocabulary of the synthetic demo data (``demo_data``): themes with their title words and tags, name parts of
songs and artists in each language, title noise and nicknames. Plain lists, so the generator reads as code."""
from __future__ import annotations

# lang: which language the theme's artists and song names lean to (zh, en, mix, yue, ja, ko).
THEMES: list[dict] = [
    {"name": "late_night", "tag": "深夜", "lang": "mix",
     "zh": ["深夜", "夜晚", "午夜", "失眠"], "en": ["late night", "midnight", "after hours", "3am"]},
    {"name": "ballad", "tag": "抒情", "lang": "zh",
     "zh": ["抒情", "情歌", "慢歌"], "en": ["ballad", "ballads", "slow songs"]},
    {"name": "sad", "tag": "伤感", "lang": "mix",
     "zh": ["伤感", "emo", "心碎", "难过"], "en": ["sad", "heartbroken", "crying", "melancholy"]},
    {"name": "workout", "tag": "健身", "lang": "en",
     "zh": ["健身", "燃脂", "撸铁"], "en": ["workout", "gym", "fitness", "beast mode"]},
    {"name": "running", "tag": "跑步", "lang": "mix",
     "zh": ["跑步", "夜跑", "晨跑"], "en": ["running", "run", "jogging", "cardio"]},
    {"name": "lofi_study", "tag": "学习", "lang": "en",
     "zh": ["学习", "专注", "自习", "lofi"], "en": ["study", "lo-fi beats", "focus", "homework"]},
    {"name": "party", "tag": "派对", "lang": "en",
     "zh": ["派对", "蹦迪", "嗨歌"], "en": ["party", "pregame", "dance party", "turn up"]},
    {"name": "rock", "tag": "摇滚", "lang": "en",
     "zh": ["摇滚", "硬摇滚", "朋克"], "en": ["rock", "classic rock", "punk", "alt rock"]},
    {"name": "folk", "tag": "民谣", "lang": "zh",
     "zh": ["民谣", "木吉他", "城市民谣"], "en": ["folk", "acoustic", "indie folk", "singer-songwriter"]},
    {"name": "hip_hop", "tag": "说唱", "lang": "mix",
     "zh": ["说唱", "嘻哈", "饶舌"], "en": ["hip hop", "rap", "trap", "bars"]},
    {"name": "gufeng", "tag": "古风", "lang": "zh",
     "zh": ["古风", "国风", "戏腔", "江湖"], "en": ["guofeng", "chinese traditional", "ancient style"]},
    {"name": "edm", "tag": "电子", "lang": "en",
     "zh": ["电子", "电音", "电子舞曲"], "en": ["edm", "electronic", "house", "techno"]},
    {"name": "jazz", "tag": "爵士", "lang": "en",
     "zh": ["爵士", "蓝调", "摇摆"], "en": ["jazz", "smooth jazz", "blues", "swing"]},
    {"name": "sleep", "tag": "睡前", "lang": "mix",
     "zh": ["睡前", "助眠", "催眠", "晚安"], "en": ["sleep", "bedtime", "sleepy", "goodnight"]},
    {"name": "road_trip", "tag": "开车", "lang": "mix",
     "zh": ["开车", "自驾", "公路", "车载"], "en": ["road trip", "driving", "car songs", "highway"]},
    {"name": "rainy_day", "tag": "雨天", "lang": "mix",
     "zh": ["雨天", "下雨", "听雨"], "en": ["rainy day", "rain", "rainy mood"]},
    {"name": "summer", "tag": "夏日", "lang": "mix",
     "zh": ["夏日", "夏天", "海边", "盛夏"], "en": ["summer", "summertime", "beach", "sunshine"]},
    {"name": "wedding", "tag": "婚礼", "lang": "mix",
     "zh": ["婚礼", "求婚", "结婚"], "en": ["wedding", "first dance", "proposal"]},
    {"name": "cafe", "tag": "咖啡馆", "lang": "mix",
     "zh": ["咖啡馆", "咖啡", "下午茶"], "en": ["cafe", "coffee shop", "coffeehouse"]},
    {"name": "kpop", "tag": "韩流", "lang": "ko",
     "zh": ["韩流", "韩语", "韩团"], "en": ["k-pop", "kpop", "korean pop"]},
    {"name": "cantonese", "tag": "粤语", "lang": "yue",
     "zh": ["粤语", "港乐", "粤语经典"], "en": ["cantonese", "canto-pop", "hong kong"]},
    {"name": "jpop", "tag": "日系", "lang": "ja",
     "zh": ["日系", "日语", "动漫"], "en": ["j-pop", "japanese", "anime"]},
    {"name": "throwback", "tag": "怀旧", "lang": "mix",
     "zh": ["怀旧", "经典老歌", "90年代"], "en": ["throwback", "90s", "oldies", "nostalgia"]},
    {"name": "piano", "tag": "钢琴", "lang": "en",
     "zh": ["钢琴", "钢琴曲", "纯音乐"], "en": ["piano", "solo piano", "instrumental"]},
    {"name": "classical", "tag": "古典", "lang": "en",
     "zh": ["古典", "交响", "古典音乐"], "en": ["classical", "symphony", "orchestra", "baroque"]},
    {"name": "kids", "tag": "儿童", "lang": "zh",
     "zh": ["儿童", "儿歌", "宝宝"], "en": ["kids", "children", "nursery rhymes"]},
    {"name": "christmas", "tag": "圣诞", "lang": "en",
     "zh": ["圣诞", "圣诞节", "平安夜"], "en": ["christmas", "xmas", "holiday", "santa"]},
    {"name": "country", "tag": "乡村", "lang": "en",
     "zh": ["乡村", "乡村音乐", "牛仔"], "en": ["country", "honky tonk", "nashville"]},
    {"name": "rnb", "tag": "节奏布鲁斯", "lang": "en",
     "zh": ["节奏布鲁斯", "灵魂乐"], "en": ["r&b", "rnb", "soul", "slow jams"]},
    {"name": "metal", "tag": "金属", "lang": "en",
     "zh": ["金属", "重金属", "金属核"], "en": ["metal", "heavy metal", "metalcore"]},
    {"name": "indie", "tag": "独立", "lang": "mix",
     "zh": ["独立", "小众", "独立音乐"], "en": ["indie", "indie pop", "bedroom pop"]},
    {"name": "chill", "tag": "放松", "lang": "mix",
     "zh": ["放松", "治愈", "慵懒"], "en": ["chill", "chill vibes", "relax", "mellow"]},
    {"name": "morning", "tag": "早晨", "lang": "mix",
     "zh": ["早晨", "起床", "清晨"], "en": ["morning", "wake up", "sunrise", "good morning"]},
    {"name": "breakup", "tag": "失恋", "lang": "zh",
     "zh": ["失恋", "分手", "放下"], "en": ["breakup", "moving on", "ex"]},
    {"name": "love", "tag": "甜蜜", "lang": "zh",
     "zh": ["甜蜜", "恋爱", "表白", "心动"], "en": ["love", "crush", "romance", "sweet"]},
    {"name": "latin", "tag": "拉丁", "lang": "en",
     "zh": ["拉丁", "雷鬼", "桑巴"], "en": ["latin", "reggaeton", "salsa"]},
    {"name": "gaming", "tag": "游戏", "lang": "mix",
     "zh": ["游戏", "电竞", "开黑"], "en": ["gaming", "game music", "esports"]},
    {"name": "soundtrack", "tag": "影视", "lang": "mix",
     "zh": ["影视", "电影原声", "原声"], "en": ["soundtrack", "movie", "ost", "film score"]},
    {"name": "motivation", "tag": "励志", "lang": "zh",
     "zh": ["励志", "正能量", "热血"], "en": ["motivation", "inspirational", "hype"]},
    {"name": "travel", "tag": "旅行", "lang": "mix",
     "zh": ["旅行", "旅途", "远方"], "en": ["travel", "wanderlust", "vacation"]},
]
THEME_NAMES = [t["name"] for t in THEMES]
THEME_INDEX = {name: i for i, name in enumerate(THEME_NAMES)}

LANGUAGE_TAG = {"zh": "华语", "en": "欧美", "yue": "粤语", "ja": "日语", "ko": "韩语"}
ZH_NOISE = ["我的", "收藏", "最爱", "私藏", "精选", "歌单", "必听", "循环", "合集", "单曲循环"]
EN_NOISE = ["my", "favorites", "playlist", "mix", "vol.2", "2024", "best of", "songs", "collection", "faves"]
VAGUE_TITLES = ["我的歌单", "my playlist", "歌单", "songs 2024", "随便听听", "好听的歌", "mix", "my faves", "无题",
                "playlist #3"]
EMOJI = ["🎧", "🔥", "💔", "🌙", "☕", "🎸", "✨", "🌧", "🚗", "🎄", "💪", "❤️", "🎹", "🌊", "😴", "🎉"]
PREFIX_NOISE = {"我的", "my", "best of"}

ZH_WORDS = ["晴天", "夜空", "星光", "告白", "回忆", "晚风", "心跳", "思念", "城市", "青春", "梦想", "月亮", "花开",
            "时光", "故事", "彩虹", "背影", "旅程", "孤单", "温柔", "约定", "明天", "微笑", "烟火", "秘密", "飞鸟",
            "森林", "灯火", "流星", "倒数", "少年", "海浪", "天空", "路口", "信仰", "风筝", "蝴蝶", "雪花", "长街",
            "黄昏", "归途", "小镇", "光年", "红豆", "稻香", "白鸽", "窗外", "银河", "纸飞机", "候鸟"]
ZH_SUFFIX = ["之歌", "人", "里", "时", "之后", "以后", "的你", "物语"]
EN_WORDS = ["Midnight", "City", "Lights", "Heart", "Dream", "Fire", "Ocean", "Golden", "Wild", "Broken", "Stars",
            "Home", "Forever", "Young", "Paper", "Moon", "River", "Shadow", "Electric", "Velvet", "Silver",
            "Sunday", "Neon", "Gravity", "Echo", "Paradise", "Honey", "Thunder", "Ghost", "Crystal", "Runaway",
            "Satellite", "Lonely", "Wonder", "Blue", "Highway", "Mirror", "Garden", "Tonight", "Rewind", "Cherry",
            "Static", "Horizon", "Ember", "Halo", "Lullaby", "Daylight", "Wildfire", "Kingdom", "Starlight"]
EN_SUFFIX = [" (Remix)", " - Live", " (Acoustic)", " (feat. Luna)", " - Radio Edit"]
CLASSICAL_FORMS = ["Symphony", "Sonata", "Nocturne", "Etude", "Concerto", "Prelude", "Waltz", "Suite"]
CLASSICAL_KEYS = ["C major", "D minor", "E-flat major", "G minor", "A major", "B-flat minor", "F major"]

ZH_SURNAMES = list("王李张刘陈杨黄赵周吴徐孙林何郭马罗梁宋郑谢韩唐冯许邓萧曹彭曾")
ZH_GIVEN = list("杰伦伟芳娜敏静丽强磊洋艳勇军涛明超秀霞平刚子轩宇浩欣怡晨雨婷思然嘉俊琳一诺安乐天心瑶逸凡")
ZH_BAND_SUFFIX = ["乐队", "乐团", "组合", "计划"]
EN_FIRST = ["Luna", "Max", "Ava", "Leo", "Mia", "Noah", "Zoe", "Eli", "Ivy", "Jack", "Nora", "Sam", "Ruby",
            "Owen", "Iris", "Finn", "Cleo", "Jude", "Maya", "Theo"]
EN_LAST = ["Hart", "Stone", "Rivers", "Gray", "Wilde", "Fox", "Lane", "Brooks", "Cole", "Vance", "Reed", "Blake",
           "Frost", "Monroe", "Quinn", "Sterling"]
EN_BAND_ADJ = ["Velvet", "Electric", "Silent", "Golden", "Neon", "Paper", "Midnight", "Wild", "Crystal", "Static"]
EN_BAND_NOUN = ["Tigers", "Echoes", "Kings", "Ghosts", "Lanterns", "Wolves", "Satellites", "Rivers", "Hearts",
                "Machines"]
KO_SURNAMES = ["Kim", "Lee", "Park", "Choi", "Jung", "Kang", "Yoon", "Han"]
KO_SYLLABLES = ["min", "ji", "soo", "hyun", "yeon", "seo", "jae", "woo", "eun", "ha", "jin", "young"]
JA_GIVEN = ["Haruka", "Sora", "Yui", "Ren", "Aoi", "Hikaru", "Mio", "Kaito", "Rin", "Yuki", "Nana", "Sho"]
JA_FAMILY = ["Sato", "Suzuki", "Takahashi", "Tanaka", "Ito", "Yamamoto", "Nakamura", "Kobayashi", "Mori"]
LATIN_ONSETS = ["b", "d", "k", "l", "m", "n", "r", "s", "t", "v", "z", "j", "f", "g", "h", "br", "st", "th"]
LATIN_VOWELS = ["a", "e", "i", "o", "u", "ai", "ei", "ou", "ia"]
LATIN_CODAS = ["", "", "n", "r", "l", "s", "x"]
JA_SYLLABLES = ["ha", "ru", "ka", "yu", "ki", "mi", "so", "ra", "ta", "ke", "shi", "na", "ri", "to", "ao", "sa"]
NICK_ZH_HEAD = ["小", "阿", "大", "老", "是", "爱听歌的"]
NICK_ZH_TAIL = ["鱼", "猫", "明", "强", "月", "树", "七", "柚子", "橘子", "兔", "熊", "星星", "夜猫子", "咸鱼"]
NICK_EN = ["luna", "echo", "pixel", "nova", "kiwi", "mango", "river", "sky", "blue", "sunny", "ghost", "panda"]
